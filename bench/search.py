"""Decision search at scale: POST /api/v1/decisions/search over a million decisions.

The reasoning is written the way agents write it: each symbol moves through market regimes
(trending up, trending down, ranging, turbulent) as a Markov chain, and each decision's reasoning
is drawn from its regime's phrase bank (a few of its phrases, the symbol, an indicator reading),
so words cluster by regime and in time. Planted phrases give queries with a known number of
matches: one phrase in exactly 25 decisions, one in 2,000.

Loaded with COPY, the NOTIFY and vocabulary triggers off and the full-text index dropped; then
the vocabulary is built in one statement and the index created. Latency is measured over HTTP
on a real gunicorn (one client, keep-alive), per kind of query.

    python bench/search.py                       # 1,000,000 decisions, 300 queries a case
    python bench/search.py --decisions 100000 --queries 100
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid

import numpy as np
import requests
from common import OPEN_ACCESS, bench_database, percentile

from app.db import db
from tests.live import WebServer

SYMBOLS = [f"{name}/USDT" for name in ("BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX")]
AGENTS = ("trend-follower", "mean-reverter", "breakout", "risk-manager")
STAY = 0.995
PHRASES = {
    "up": [
        "higher highs and higher lows",
        "price holds above the 50 period moving average",
        "momentum is building",
        "volume confirms the breakout",
        "MACD histogram expanding",
        "pullback bought at the 20 EMA",
        "trend strength rising on ADX",
        "golden cross forming",
        "buyers absorb every dip",
        "resistance turned into support",
    ],
    "down": [
        "lower highs and lower lows",
        "price rejected at the 50 period moving average",
        "momentum is fading",
        "sellers in control",
        "MACD crossed below its signal line",
        "bearish RSI divergence",
        "support broke on rising volume",
        "death cross forming",
        "relief rally sold into",
        "funding turned negative",
    ],
    "range": [
        "price oscillates between support and resistance",
        "mean reversion favours the edges",
        "Bollinger bands narrow and flat",
        "no directional conviction",
        "RSI hovering near 50",
        "volume drying up",
        "range high rejected again",
        "fading the move back to the midline",
        "chop continues",
        "waiting for a break of the range",
    ],
    "turbulent": [
        "a sharp crash wiped out the lows",
        "liquidations spiked",
        "volatility spike",
        "position size cut and stops widened",
        "wide candles both ways",
        "order book thin after the cascade",
        "capitulation volume",
        "spreads widened",
        "emergency risk reduction",
        "gap through the stop",
    ],
}
REGIMES = list(PHRASES)
RARE_PHRASE = "whale wallet accumulation"  # in exactly 25 decisions
UNCOMMON_PHRASE = "options expiry pinning"  # in exactly 2,000


def generate(total: int, seed: int = 7) -> list[tuple]:
    """(id, agent, symbol, decision, reasoning, prompt, created_at) of ``total`` decisions."""
    rng = np.random.default_rng(seed)
    regimes = dict.fromkeys(SYMBOLS, 2)
    rows = []
    # Every symbol is decided at every step, by the step's agent: symbols interleave in time,
    # as they do in a real log.
    for step in range(-(-total // len(SYMBOLS))):
        agent = AGENTS[step % len(AGENTS)]
        for symbol in SYMBOLS:
            if rng.random() > STAY:
                regimes[symbol] = int(rng.integers(0, 4))
            bank = PHRASES[REGIMES[regimes[symbol]]]
            picked = rng.choice(len(bank), size=3, replace=False)
            rsi = round(float(np.clip(50 + 15 * rng.standard_normal(), 5, 95)), 1)
            reasoning = (
                f"{symbol}: {bank[picked[0]]}; {bank[picked[1]]}. RSI {rsi}, {bank[picked[2]]}."
            )
            prompt = (
                f"You are {agent}. Symbol {symbol}. Regime indicators: RSI {rsi}. "
                "Decide BUY, SELL or HOLD with a confidence and explain."
            )
            decision = ("BUY", "SELL", "HOLD")[int(rng.integers(0, 3))]
            rows.append([agent, symbol, decision, reasoning, prompt])
    rows = rows[:total]
    for phrase, count in ((RARE_PHRASE, 25), (UNCOMMON_PHRASE, 2_000)):
        for row in rng.choice(len(rows), size=count, replace=False):
            rows[row][3] += f" Note: {phrase}."
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in rows]
    return [(ids[n], *row, 1.7e9 + n * 4) for n, row in enumerate(rows)]


def load(rows) -> dict:
    """COPY the decisions in (triggers off, full-text index dropped), then build the vocabulary
    and the index."""
    timings = {}
    with db.connection_context():
        for agent in AGENTS:
            db.execute_sql("INSERT INTO agents (name) VALUES (%s) ON CONFLICT DO NOTHING", (agent,))
        db.execute_sql("DROP INDEX IF EXISTS llm_decisions_search")
        db.execute_sql("ALTER TABLE llm_decisions DISABLE TRIGGER llm_decisions_notify")
        db.execute_sql("ALTER TABLE llm_decisions DISABLE TRIGGER decision_words_learn")
        started = time.perf_counter()
        cursor = db.cursor()
        chunk = 100_000
        for start in range(0, len(rows), chunk):
            buffer = io.StringIO()
            for id_, agent, symbol, decision, reasoning, prompt, at in rows[start : start + chunk]:
                created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
                buffer.write(
                    f"{id_}\t{agent}\t{symbol}\tsignal\t{decision}\t0.7\t{reasoning}\t{prompt}\t"
                    f"bench-model\t{created}+00\n"
                )
            buffer.seek(0)
            cursor.copy_expert(
                "COPY llm_decisions (id, agent_name, symbol, decision_type, decision, "
                "confidence, reasoning, prompt, model, created_at) FROM STDIN",
                buffer,
            )
        db.execute_sql("ALTER TABLE llm_decisions ENABLE TRIGGER llm_decisions_notify")
        db.execute_sql("ALTER TABLE llm_decisions ENABLE TRIGGER decision_words_learn")
        timings["copy_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        db.execute_sql(
            "INSERT INTO decision_words (word, trigrams) SELECT word, search_trigrams(word) "
            "FROM (SELECT search_words(reasoning) AS word FROM llm_decisions "
            "UNION SELECT search_words(prompt) FROM llm_decisions) w ON CONFLICT DO NOTHING"
        )
        timings["vocabulary_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        db.execute_sql("SET maintenance_work_mem = '512MB'")
        db.execute_sql(
            "CREATE INDEX llm_decisions_search ON llm_decisions USING gin (search_document)"
        )
        timings["gin_build_seconds"] = round(time.perf_counter() - started, 1)
        db.execute_sql("VACUUM ANALYZE llm_decisions")
        db.execute_sql("ANALYZE decision_words")
        timings["vocabulary_words"] = db.execute_sql(
            "SELECT count(*) FROM decision_words"
        ).fetchone()[0]
    return timings


# name: (request bodies to cycle through, whether it is a full-text case for the goal)
CASES = {
    "common word": ([{"query": q} for q in ("momentum", "volume", "support", "RSI")], True),
    "two words": (
        [
            {"query": q}
            for q in ("bearish divergence", "volatility spike", "golden cross", "range high")
        ],
        True,
    ),
    "quoted phrase": (
        [
            {"query": f'"{q}"'}
            for q in ("liquidations spiked", "chop continues", "death cross forming")
        ],
        True,
    ),
    "rare phrase (25)": ([{"query": RARE_PHRASE}], True),
    "uncommon phrase (2,000)": ([{"query": UNCOMMON_PHRASE}], True),
    "with symbol + agent filter": (
        [{"query": "momentum", "symbol": s, "agent_name": "breakout"} for s in SYMBOLS],
        True,
    ),
    "exclusion": ([{"query": "momentum -fading"}, {"query": "crash -liquidations"}], True),
    "misspelt (corrected)": (
        [{"query": q} for q in ("whale walet acumulation", "capitulaton", "divergnce")],
        False,
    ),
    "run-together symbol": ([{"query": q} for q in ("ethusdt", "dogeusdt")], False),
}


def measure(web, cases: dict, queries: int) -> dict:
    session = requests.Session()
    results = {}
    for name, (bodies, _) in cases.items():
        latencies, counts = [], []
        for n in range(queries):
            started = time.perf_counter()
            response = session.post(
                web.url("/api/v1/decisions/search"),
                json={**bodies[n % len(bodies)], "limit": 20},
                timeout=30,
            )
            latencies.append(time.perf_counter() - started)  # fmt: skip
            assert response.status_code == 200, response.text
            counts.append(response.json()["count"])
        results[name] = {
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "results_min": min(counts),
        }
        print(json.dumps({name: results[name]}), flush=True)
    return results


def check_relevance(web) -> dict:
    """The rare phrase's 25 decisions come back first and all of them; the corrected spelling
    finds them too."""
    answers = {}
    for query in (f'"{RARE_PHRASE}"', "whale walet acumulation"):
        body = requests.post(web.url("/api/v1/decisions/search"),
                             json={"query": query, "limit": 25}, timeout=30).json()  # fmt: skip
        answers[query] = sum(RARE_PHRASE in hit["decision"]["reasoning"] for hit in body["results"])
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--reuse", action="store_true",
        help="with DATABASE_URL: keep decisions a previous run loaded there (same seed)",
    )  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    rows = generate(args.decisions)
    print(json.dumps({"generated": len(rows), "seconds": round(time.perf_counter() - started, 1)}))
    with bench_database() as url:
        loaded = db.execute_sql("SELECT count(*) FROM llm_decisions").fetchone()[0]
        if not (args.reuse and loaded == len(rows)):
            db.execute_sql("TRUNCATE llm_decisions, decision_words CASCADE")
            print(json.dumps(load(rows)), flush=True)
        del rows
        db.close_all()
        web = WebServer(url, workers=1, LOG_LEVEL="warning", **OPEN_ACCESS)
        try:
            measure(web, {"warm-up": CASES["common word"]}, 50)
            results = measure(web, CASES, args.queries)
            relevance = check_relevance(web)
        finally:
            web.stop()
    full_text = [results[name]["p50_ms"] for name, (_, counted) in CASES.items() if counted]
    summary = {
        "decisions": args.decisions,
        "results": results,
        "relevance_rare_phrase_of_25": relevance,
        "full_text_worst_p50_ms": max(full_text),
        "goal_full_text_p50_below_20_ms": max(full_text) < 20,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
