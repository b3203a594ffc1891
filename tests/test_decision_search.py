"""POST /api/v1/decisions/search: full text, corrected misspellings, embeddings and the hybrid,
over a seeded corpus of decisions written in three market regimes."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from app import create_app
from app.agents.embeddings import Embedder, EmbeddingFailure, EmbeddingSweep, embed_pending
from app.db import db
from app.models import utcnow
from tests.conftest import with_key
from tests.factories import make_decision, make_key
from tests.fake_llm import FakeLLM
from tests.live import start_worker, wait_until

SEARCH = "/api/v1/decisions/search"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
AGENTS = ("trend-agent", "reversion-agent")
REGIMES = {
    "trending": [
        "Price holds above the 50 period moving average; momentum is building and volume "
        "confirms the breakout.",
        "Higher highs and higher lows: the trend is intact, MACD histogram expanding.",
    ],
    "ranging": [
        "Price oscillates between support and resistance; mean reversion favours fading the "
        "edges of the range.",
        "Bollinger bands are narrow and flat, a quiet range with no directional conviction.",
    ],
    "volatile": [
        "A sharp crash wiped out the lows; funding turned negative and liquidations spiked.",
        "Wide candles and a volatility spike: position size cut, stops widened.",
    ],
}
# A phrase that appears in exactly three decisions, all on ETH.
PHRASE = "bearish RSI divergence"


def unit(*weights: float) -> list[float]:
    return list(weights) + [0.0] * (16 - len(weights))


@pytest.fixture
def corpus(app) -> dict:
    """60 decisions from three regimes, three of them citing PHRASE; their ids by kind."""
    rng = random.Random(7)
    ids: dict[str, list[str]] = {"phrase": [], "volatile": [], "btc": []}
    start = utcnow().replace(microsecond=0) - timedelta(days=3)
    for n in range(60):
        regime = list(REGIMES)[n % 3]
        symbol = SYMBOLS[n % len(SYMBOLS)] if n not in (10, 25, 40) else "ETH/USDT"
        reasoning = rng.choice(REGIMES[regime])
        if n in (10, 25, 40):
            reasoning = f"A {PHRASE} on the 4h chart: momentum fades while price pushes higher."
        decision = make_decision(
            agent_name=AGENTS[n % 2],
            symbol=symbol,
            decision="SELL" if regime == "volatile" else "BUY",
            reasoning=reasoning,
            prompt=f"Market regime: {regime}. Symbol {symbol}. Decide BUY, SELL or HOLD.",
            outcome=("SUCCESS", "FAILURE", "PENDING")[(n // 3) % 3],
            prompt_embedding=unit(*([1.0, 0.2, 0.1] if regime == "volatile" else [0.1, 1.0])),
            created_at=start + timedelta(minutes=n),
        )
        if n in (10, 25, 40):
            ids["phrase"].append(str(decision.id))
        if regime == "volatile":
            ids["volatile"].append(str(decision.id))
        if symbol == "BTC/USDT":
            ids["btc"].append(str(decision.id))
    return ids


def search(client, **body):
    response = client.post(SEARCH, json=body)
    assert response.status_code == 200, response.json
    return response.json


def found(body) -> list[str]:
    return [hit["decision"]["id"] for hit in body["results"]]


def test_a_phrase_in_exactly_k_decisions_returns_those_k_first(client, corpus):
    body = search(client, query=f'"{PHRASE}"')
    assert sorted(found(body)) == sorted(corpus["phrase"])
    assert body["count"] == 3 and body["mode"] == "full_text" and body["semantic"] == "off"
    for hit in body["results"]:
        assert 0.5 < hit["score"] <= 1
        assert "**divergence**" in hit["highlight"]
        assert set(hit["decision"]) >= {"id", "agent_name", "symbol", "reasoning", "outcome"}
        assert "prompt" not in hit["decision"]
    # Without quotes the words still rank those three first, ahead of looser matches.
    loose = search(client, query="rsi divergence momentum", limit=10)
    assert sorted(found(loose)[:3]) == sorted(corpus["phrase"])
    scores = [hit["score"] for hit in loose["results"]]
    assert scores == sorted(scores, reverse=True)


def test_misspellings_and_run_together_symbols_still_find_them(client, corpus):
    body = search(client, query="bearsih divergnce")
    assert sorted(found(body)[:3]) == sorted(corpus["phrase"])
    assert all(0 < hit["score"] < 0.5 for hit in body["results"])  # corrected, not exact
    assert "**" in body["results"][0]["highlight"]
    # "btcusdt" and "btc usdt" are BTC/USDT, written as one word in the prompts.
    for query in ("btcusdt", "btc usdt", "BTC/USDT"):
        hits = search(client, query=query, limit=100)
        assert set(found(hits)) == set(corpus["btc"]), query
    # Gibberish corrects to nothing and finds nothing: an empty answer, not an error.
    assert search(client, query="qqxxzzvv")["results"] == []


def test_websearch_syntax_exclusion_and_alternatives(client, corpus):
    crash = set(found(search(client, query="crash", limit=100)))
    assert crash and crash <= set(corpus["volatile"])
    without_phrase = found(search(client, query="momentum -divergence", limit=100))
    assert without_phrase and not set(without_phrase) & set(corpus["phrase"])
    either = set(found(search(client, query="crash or breakout", limit=100)))
    assert crash < either


def test_filters_combine_with_the_query(client, corpus):
    body = search(client, query="momentum", symbol="ETH/USDT", agent_name="trend-agent",
                  limit=100)  # fmt: skip
    assert body["results"]
    for hit in body["results"]:
        assert hit["decision"]["symbol"] == "ETH/USDT"
        assert hit["decision"]["agent_name"] == "trend-agent"
    outcome = search(client, query="crash", outcome="SUCCESS", decision_type="signal", limit=100)
    assert outcome["results"] and all(
        hit["decision"]["outcome"] == "SUCCESS" for hit in outcome["results"]
    )
    everything = search(client, query="momentum", limit=100)
    newest = max(hit["decision"]["created_at"] for hit in everything["results"])
    window = search(client, query="momentum", from_date=newest, limit=100)
    assert [hit["decision"]["created_at"] for hit in window["results"]] == [newest]
    assert len(search(client, query="momentum", limit=2)["results"]) == 2


def test_an_embedding_ranks_by_market_context_and_a_query_beside_it_is_fused(client, corpus):
    body = search(client, embedding=unit(1.0, 0.2, 0.1), limit=20)
    assert body["mode"] == "embedding"
    assert set(found(body)) == set(corpus["volatile"])
    assert body["results"][0]["score"] == pytest.approx(1.0)
    narrow = search(client, embedding=unit(1.0, 0.2, 0.1), symbol="SOL/USDT", limit=50)
    assert narrow["results"] and all(
        hit["decision"]["symbol"] == "SOL/USDT" for hit in narrow["results"]
    )
    hybrid = search(client, query="momentum", embedding=unit(1.0, 0.2, 0.1), limit=50)
    assert hybrid["mode"] == "hybrid"
    scores = [hit["score"] for hit in hybrid["results"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "query"),
        ({"symbol": "BTC/USDT"}, "query"),
        ({"query": "x" * 501}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "a\u0000b"}, "query"),
        ({"embedding": [0.1] * 15}, "embedding"),
        ({"embedding": [0.0] * 16}, "embedding"),
        ({"query": "crash", "limit": 101}, "limit"),
        ({"query": "crash", "limit": 0}, "limit"),
        ({"query": "crash", "outcome": "MAYBE"}, "outcome"),
        ({"query": "crash", "from_date": "2026-02-01T00:00:00Z", "to_date": "2026-01-01T00:00:00Z"},
         "from_date"),
    ],
)  # fmt: skip
def test_bad_searches_get_a_400_naming_the_field(client, body, field):
    response = client.post(SEARCH, json=body)
    assert response.status_code == 400, response.json
    assert response.json["error"] and field in str(response.json), response.json


def test_viewers_search_and_it_counts_against_the_general_limit_only(app, corpus):
    viewer = with_key(app.test_client(), make_key("viewer", write_limit="1/minute"))
    for _ in range(3):
        assert viewer.post(SEARCH, json={"query": "crash"}).status_code == 200
    limited = with_key(app.test_client(), make_key("viewer", rate_limit="2/minute"))
    statuses = [limited.post(SEARCH, json={"query": "crash"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert app.test_client().post(SEARCH, json={"query": "crash"}).status_code == 401


# -- semantic: an embeddings endpoint (the fake OpenAI server) ---------------------------------
@pytest.fixture
def fake_llm():
    server = FakeLLM()
    yield server
    server.close()


def semantic_client(settings, fake_llm, admin_key, model="embed-small"):
    semantic = replace(settings, llm_base_url=fake_llm.base_url, llm_model="approve-x",
                       llm_embedding_model=model)  # fmt: skip
    return with_key(create_app(semantic).test_client(), admin_key), semantic


def test_semantic_search_finds_meaning_the_words_miss(settings, fake_llm, admin_key, corpus):
    client, semantic = semantic_client(settings, fake_llm, admin_key)
    embedder = Embedder(semantic, timeout=5)
    while embed_pending(embedder):
        pass
    stored = db.execute_sql("SELECT count(*) FROM decision_text_embeddings").fetchone()[0]
    assert stored == 60
    # "plunge" is in no decision; the fake model puts it beside "crash".
    words_only = client.post(SEARCH, json={"query": "plunge"}).json
    assert words_only["mode"] == "hybrid" and words_only["semantic"] == "on"
    top = found(words_only)[:3]
    assert top and set(top) <= set(corpus["volatile"])
    asked = [r for r in fake_llm.requests if "input" in r]
    assert asked[-1] == {"model": "embed-small", "input": ["plunge"], "encoding_format": "float"}


@pytest.mark.parametrize("model", ["down-embed", "slow-embed", "garbage-embed", "limited-embed"])
def test_a_failing_embeddings_endpoint_falls_back_to_full_text(
    settings, fake_llm, admin_key, corpus, model
):
    client, _ = semantic_client(settings, fake_llm, admin_key, model=model)
    response = client.post(SEARCH, json={"query": f'"{PHRASE}"'})
    assert response.status_code == 200
    body = response.json
    assert body["semantic"] == "failed" and body["mode"] == "full_text"
    assert sorted(found(body)) == sorted(corpus["phrase"])
    assert body["notices"]


@pytest.mark.parametrize("model", ["down-embed", "garbage-embed", "short-embed"])
def test_the_sweep_backs_off_while_the_endpoint_fails(settings, fake_llm, corpus, model):
    semantic = replace(settings, llm_base_url=fake_llm.base_url, llm_embedding_model=model)
    embedder = Embedder(semantic, timeout=5)
    with pytest.raises(EmbeddingFailure):
        embed_pending(embedder)
    sweep = EmbeddingSweep(embedder)
    assert sweep.run_if_due(now=100.0) == 0
    first_wait = sweep.next_run - 100.0
    assert sweep.run_if_due(now=100.0) == 0  # not due: no call
    calls = len(fake_llm.requests)
    assert sweep.run_if_due(now=sweep.next_run) == 0
    assert len(fake_llm.requests) == calls + 1
    assert sweep.next_run - (100.0 + first_wait) > first_wait  # the wait doubled
    assert db.execute_sql("SELECT count(*) FROM decision_text_embeddings").fetchone()[0] == 0


def test_the_vocabulary_learns_words_of_new_decisions(app):
    make_decision(reasoning="Capitulation candle on SOL/USDT, 42000 support", prompt=None)
    words = {row[0] for row in db.execute_sql("SELECT word FROM decision_words")}
    assert {"capitulation", "candle", "sol/usdt", "support"} <= words
    assert "42000" not in words


def test_the_agents_process_embeds_each_new_decision(database_url, fake_llm, client):
    agents = start_worker(database_url, command="agents", LLM_BASE_URL=fake_llm.base_url,
                          LLM_MODEL="approve-x", LLM_EMBEDDING_MODEL="embed-small")  # fmt: skip
    try:
        posted = client.post("/api/v1/decisions", json={
            "agent_name": "outside-agent", "symbol": "ETH/USDT", "decision_type": "signal",
            "decision": "SELL", "confidence": 0.7, "model": "m",
            "reasoning": "Capitulation: funding flipped and the lows were swept.",
        })  # fmt: skip
        assert posted.status_code == 201
        decision_id = posted.json["decision"]["id"]

        def embedded():
            return db.execute_sql(
                "SELECT model, vector_dims(embedding) FROM decision_text_embeddings "
                "WHERE decision_id = %s", (decision_id,)
            ).fetchall()  # fmt: skip

        wait_until(lambda: embedded(), timeout=20)
        assert embedded() == [("embed-small", 512)]
    finally:
        agents.terminate()
        agents.wait(timeout=20)


def test_common_words_walk_the_newest_decisions_and_answer_the_same(client, corpus):
    from app.agents import search as search_module

    before = search(client, query='"momentum is building"', limit=100)
    db.execute_sql("ANALYZE llm_decisions")
    search_module._statistics["read_at"] = float("-inf")  # read the fresh statistics
    try:
        assert search_module._frequent("momentum building", any_of=False)
        assert not search_module._frequent("whale", any_of=False)
        walked = search(client, query='"momentum is building"', limit=100)
    finally:
        search_module._statistics["read_at"] = float("-inf")
    assert found(walked) == found(before) and found(walked)
