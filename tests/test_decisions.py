"""Decisions: filters and paging, detail, pgvector similarity, SQL statistics, recording."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from app.agents import similarity
from app.db import db
from app.models import Agent, Decision
from tests.factories import make_decision, make_session


def unit(*weights: float) -> list[float]:
    """A 16-dim vector with the given leading components."""
    vector = list(weights) + [0.0] * (16 - len(weights))
    return vector


def test_list_returns_spec_fields_without_heavy_columns(client):
    make_decision(prompt="long prompt", response="long response", prompt_embedding=unit(1))
    body = client.get("/api/v1/decisions").json
    assert body["count"] == 1
    assert body["filter"] == {"limit": 50, "offset": 0}
    decision = body["decisions"][0]
    assert set(decision) >= {
        "id", "agent_name", "symbol", "decision_type", "decision", "confidence", "reasoning",
        "context", "prompt_tokens", "completion_tokens", "model", "outcome", "actual_pnl",
        "created_at",
    }  # fmt: skip
    assert "prompt" not in decision
    assert "prompt_embedding" not in decision


def test_list_filters_each_and_echoes_them(client):
    make_decision(symbol="BTC/USDT", decision_type="signal", outcome="SUCCESS", model="m1")
    make_decision(symbol="ETH/USDT", decision_type="signal", outcome="FAILURE", model="m2")
    make_decision(symbol="BTC/USDT", decision_type="risk_approval", decision="APPROVE", model="m1")
    cases = {
        "symbol=BTC/USDT": 2,
        "symbol=eth-usdt": 1,
        "decision_type=risk_approval": 1,
        "outcome=success": 1,
        "outcome=PENDING": 1,
        "model=m1": 2,
        "model=m1&decision_type=signal": 1,
        "agent_name=trend-agent": 3,
    }
    for query, expected in cases.items():
        assert client.get(f"/api/v1/decisions?{query}").json["count"] == expected, query
    echoed = client.get("/api/v1/decisions?symbol=btc-usdt&limit=5").json["filter"]
    assert echoed == {"symbol": "BTC/USDT", "limit": 5, "offset": 0}


def test_list_date_range_and_paging(client):
    days = [datetime(2025, 1, day, 12, tzinfo=UTC) for day in (10, 12, 14, 16)]
    ids = [str(make_decision(created_at=day).id) for day in days]
    ranged = client.get(
        "/api/v1/decisions?from_date=2025-01-11T00:00:00Z&to_date=2025-01-15T00:00:00Z"
    ).json
    assert [d["id"] for d in ranged["decisions"]] == [ids[2], ids[1]]
    assert ranged["filter"]["from_date"] == "2025-01-11T00:00:00.000000Z"
    page = client.get("/api/v1/decisions?limit=2&offset=1").json
    assert [d["id"] for d in page["decisions"]] == [ids[2], ids[1]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("offset=-1", "offset"),
        ("outcome=MAYBE", "outcome"),
        ("from_date=last-tuesday", "from_date"),
        ("from_date=2025-02-01T00:00:00Z&to_date=2025-01-01T00:00:00Z", "from_date"),
        ("decision_type=Bad Type", "decision_type"),
    ],
)
def test_list_rejects_bad_filters(client, query, field):
    response = client.get(f"/api/v1/decisions?{query}")
    assert response.status_code == 400
    assert response.json["field"] == field


def test_limit_500_is_accepted(client):
    assert client.get("/api/v1/decisions?limit=500").status_code == 200


def test_detail_includes_prompt_response_and_embedding(client):
    decision = make_decision(
        prompt="Full prompt", response="Full response", prompt_embedding=unit(0.5, -0.25)
    )
    body = client.get(f"/api/v1/decisions/{decision.id}").json
    assert body["id"] == str(decision.id)
    assert body["prompt"] == "Full prompt"
    assert body["response"] == "Full response"
    assert body["prompt_embedding"][:3] == [0.5, -0.25, 0.0]
    assert len(body["prompt_embedding"]) == 16


def test_detail_errors(client):
    assert client.get("/api/v1/decisions/nope").json == {
        "error": "invalid decision_id format",
        "field": "decision_id",
    }
    missing = client.get(f"/api/v1/decisions/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json["error"] == "decision not found"


def test_similar_orders_by_cosine_similarity_and_excludes_reference(client):
    reference = make_decision(prompt_embedding=unit(1, 0))
    angles = {"same": 0.0, "close": 10.0, "mid": 45.0, "far": 100.0, "opposite": 180.0}
    made = {}
    for name, degrees in angles.items():
        radians = math.radians(degrees)
        made[name] = make_decision(prompt_embedding=unit(math.cos(radians), math.sin(radians)))
    make_decision(prompt_embedding=None)
    body = client.get(f"/api/v1/decisions/{reference.id}/similar").json
    assert body["decision_id"] == str(reference.id)
    assert body["count"] == 5
    assert [s["id"] for s in body["similar"]] == [str(made[name].id) for name in angles]
    similarities = [s["similarity"] for s in body["similar"]]
    expected = [math.cos(math.radians(d)) for d in angles.values()]
    assert similarities == pytest.approx(expected, abs=1e-6)
    assert set(body["similar"][0]) == {
        "id", "symbol", "decision", "confidence", "outcome", "similarity", "created_at"
    }  # fmt: skip


def test_similar_limit_default_max_and_validation(client):
    reference = make_decision(prompt_embedding=unit(1))
    for index in range(60):
        make_decision(prompt_embedding=unit(1, index / 10))
    assert client.get(f"/api/v1/decisions/{reference.id}/similar").json["count"] == 10
    assert client.get(f"/api/v1/decisions/{reference.id}/similar?limit=50").json["count"] == 50
    too_many = client.get(f"/api/v1/decisions/{reference.id}/similar?limit=51")
    assert too_many.status_code == 400
    assert too_many.json["field"] == "limit"


def test_similar_filters_by_symbol_and_agent(client):
    reference = make_decision(prompt_embedding=unit(1, 0))
    near_eth = make_decision(symbol="ETH/USDT", prompt_embedding=unit(1, 0.1))
    far_eth = make_decision(symbol="ETH/USDT", agent_name="risk-agent", prompt_embedding=unit(0, 1))
    make_decision(prompt_embedding=unit(1, 0.01))  # BTC, nearest of all
    base = f"/api/v1/decisions/{reference.id}/similar"
    by_symbol = client.get(f"{base}?symbol=eth-usdt").json["similar"]
    assert [item["id"] for item in by_symbol] == [str(near_eth.id), str(far_eth.id)]
    by_agent = client.get(f"{base}?agent_name=risk-agent").json["similar"]
    assert [item["id"] for item in by_agent] == [str(far_eth.id)]
    both = client.get(f"{base}?symbol=ETH/USDT&agent_name=trend-agent").json["similar"]
    assert [item["id"] for item in both] == [str(near_eth.id)]
    bad = client.get(f"{base}?symbol=not a pair")
    assert (bad.status_code, bad.json["field"]) == (400, "symbol")


def _exact_neighbours(reference_id, symbol, limit):
    rows = db.execute_sql(
        "SELECT id::text FROM llm_decisions WHERE id <> %s AND symbol = %s "
        "AND prompt_embedding IS NOT NULL ORDER BY (prompt_embedding <=> (SELECT "
        "prompt_embedding FROM llm_decisions WHERE id = %s)) + 0 LIMIT %s",
        (str(reference_id), symbol, str(reference_id), limit),
    ).fetchall()
    return [row[0] for row in rows]


def test_a_selective_filter_still_fills_the_page(client, monkeypatch):
    """The index walk gives up after hnsw.max_scan_tuples: a filter matching few decisions far
    from the reference still gets a full page (exact scan), whichever path answers it."""
    reference = make_decision(prompt_embedding=unit(1, 0))
    for index in range(150):  # many near ones on BTC/USDT
        make_decision(prompt_embedding=unit(1, index / 1000))
    for index in range(12):  # a few far ones on SOL/USDT
        make_decision(symbol="SOL/USDT", prompt_embedding=unit(-1, 1 + index / 10))
    expected = _exact_neighbours(reference.id, "SOL/USDT", 10)
    path = f"/api/v1/decisions/{reference.id}/similar?symbol=SOL/USDT"
    assert [item["id"] for item in client.get(path).json["similar"]] == expected  # exact path
    # Through the index first, with a walk starved so that it comes back short.
    monkeypatch.setattr(similarity, "EXACT_UP_TO", 0)
    walk = similarity._approximate
    answers = []

    def starved_walk(where, params):
        with db.atomic():
            # A table this small would be sorted whole; make the planner walk the graph.
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                db.execute_sql(f"SET LOCAL {setting} = off")
            db.execute_sql("SET LOCAL hnsw.max_scan_tuples = 1")
            found = walk(where, params)
        answers.append(len(found))
        return found

    monkeypatch.setattr(similarity, "_approximate", starved_walk)
    assert [item["id"] for item in client.get(path).json["similar"]] == expected
    assert answers and answers[0] < 10  # the walk came back short; the exact scan filled it


def test_similar_errors_and_reference_without_embedding(client):
    missing = client.get(f"/api/v1/decisions/{uuid.uuid4()}/similar")
    assert missing.status_code == 404
    assert client.get("/api/v1/decisions/x/similar").status_code == 400
    bare = make_decision(prompt_embedding=None)
    for _ in range(12):  # more than a page: the index must not rank them against nothing
        make_decision(prompt_embedding=unit(1))
    assert client.get(f"/api/v1/decisions/{bare.id}/similar").json == {
        "decision_id": str(bare.id),
        "similar": [],
        "count": 0,
    }


def test_stats_arithmetic_on_seeded_decisions(client):
    seeded = [
        ("signal", "SUCCESS", "0.9", "100", "m1", "0.02", 1000),
        ("signal", "SUCCESS", "0.8", "50", "m1", "0.03", 1500),
        ("signal", "FAILURE", "0.6", "-30", "m2", "0.01", 500),
        ("risk_approval", "PENDING", "0.7", None, "m1", "0.04", 2000),
    ]
    for decision_type, outcome, confidence, pnl, model, cost, latency in seeded:
        make_decision(
            decision_type=decision_type,
            decision="APPROVE" if decision_type == "risk_approval" else "BUY",
            outcome=outcome,
            confidence=Decimal(confidence),
            actual_pnl=None if pnl is None else Decimal(pnl),
            model=model,
            cost=Decimal(cost),
            latency_ms=latency,
        )
    make_decision(symbol="ETH/USDT", outcome="FAILURE", model="m3", cost=Decimal("1"))
    stats = client.get("/api/v1/decisions/stats?symbol=BTC/USDT").json
    assert stats["total_decisions"] == 4
    assert stats["by_outcome"] == {"SUCCESS": 2, "FAILURE": 1, "PENDING": 1}
    assert stats["by_decision_type"] == {"signal": 3, "risk_approval": 1}
    assert stats["by_model"] == {"m1": 3, "m2": 1}
    assert stats["avg_confidence"] == pytest.approx(0.75)
    assert stats["success_rate"] == pytest.approx(2 / 3)
    assert stats["avg_pnl"] == pytest.approx(40)
    assert stats["total_cost"] == pytest.approx(0.10)
    assert stats["avg_latency_ms"] == pytest.approx(1250)
    only_signal = client.get("/api/v1/decisions/stats?symbol=BTC/USDT&decision_type=signal").json
    assert only_signal["total_decisions"] == 3
    everything = client.get("/api/v1/decisions/stats").json
    assert everything["total_decisions"] == 5
    assert everything["success_rate"] == pytest.approx(0.5)
    empty = client.get("/api/v1/decisions/stats?from_date=2030-01-01T00:00:00Z").json
    assert empty["total_decisions"] == 0
    assert empty["success_rate"] == 0


def test_record_decision_from_external_agent(client):
    session = make_session()
    response = client.post(
        "/api/v1/decisions",
        json={
            "agent_name": "external-llm",
            "symbol": "btc-usdt",
            "decision_type": "signal",
            "decision": "buy",
            "confidence": 0.85,
            "reasoning": "Breakout above resistance",
            "context": {"price": 42000.0, "rsi": 61.2},
            "prompt": "p",
            "response": "r",
            "prompt_embedding": unit(0.3, 0.4),
            "prompt_tokens": 1250,
            "completion_tokens": 180,
            "latency_ms": 900,
            "cost": 0.012,
            "model": "gpt-4-turbo",
            "session_id": str(session.id),
        },
    )
    assert response.status_code == 201
    decision = response.json["decision"]
    assert decision["decision"] == "BUY"
    assert decision["symbol"] == "BTC/USDT"
    assert decision["outcome"] == "PENDING"
    assert decision["session_id"] == str(session.id)
    assert decision["prompt_embedding"][:2] == pytest.approx([0.3, 0.4])
    assert Agent.get_by_id("external-llm").status == "active"
    stored = Decision.get_by_id(uuid.UUID(decision["id"]))
    assert stored.cost == Decimal("0.012")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"confidence": 1.2}, "confidence"),
        ({"decision": "MAYBE"}, "decision"),
        ({"prompt_embedding": [1.0] * 15}, "prompt_embedding"),
        ({"prompt_embedding": [0.0] * 16}, "prompt_embedding"),
        ({"prompt_tokens": -1}, "prompt_tokens"),
        ({"agent_name": "bad name!"}, "agent_name"),
        ({"context": "not an object"}, "context"),
        ({"session_id": "abc"}, "session_id"),
        ({"model": ""}, "model"),
    ],
)
def test_record_decision_validation(client, change, field):
    body = {
        "agent_name": "x",
        "symbol": "BTC/USDT",
        "decision_type": "signal",
        "decision": "BUY",
        "confidence": 0.5,
        "model": "m",
    }
    body.update(change)
    response = client.post("/api/v1/decisions", json=body)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert Decision.select().count() == 0


def test_record_decision_for_unknown_session_is_404(client):
    response = client.post(
        "/api/v1/decisions",
        json={
            "agent_name": "x",
            "symbol": "BTC/USDT",
            "decision_type": "signal",
            "decision": "HOLD",
            "confidence": 0.5,
            "model": "m",
            "session_id": str(uuid.uuid4()),
        },
    )
    assert response.status_code == 404
    assert Agent.select().count() == 0


def test_stats_list_every_outcome_and_filtered_keys_even_at_zero(client):
    make_decision(outcome="SUCCESS", latency_ms=3)
    make_decision(outcome="SUCCESS", latency_ms=2)
    stats = client.get("/api/v1/decisions/stats?model=unused-model").json
    assert stats["total_decisions"] == 0
    assert stats["by_outcome"] == {"SUCCESS": 0, "FAILURE": 0, "PENDING": 0}
    assert stats["by_decision_type"] == {"signal": 0, "risk_approval": 0}
    assert stats["by_model"] == {"unused-model": 0}
    everything = client.get("/api/v1/decisions/stats").json
    assert everything["by_outcome"]["PENDING"] == 0
    assert everything["avg_latency_ms"] == 3  # 2.5 rounds half up, and is an integer
    assert isinstance(everything["avg_latency_ms"], int)


def test_lists_report_the_total_across_pages(client):
    for _ in range(5):
        make_decision()
    page = client.get("/api/v1/decisions?limit=2&offset=2").json
    assert (page["count"], page["total"], page["total_exact"]) == (2, 5, True)
    filtered = client.get("/api/v1/decisions?limit=2&outcome=SUCCESS").json
    assert (filtered["count"], filtered["total"]) == (0, 0)


def test_a_total_beyond_the_exact_bound_is_an_estimate(client, monkeypatch):
    from app import pagination

    monkeypatch.setattr(pagination, "EXACT_TOTAL_UP_TO", 3)
    for _ in range(6):
        make_decision()
    page = client.get("/api/v1/decisions?limit=2").json
    assert page["count"] == 2
    assert page["total_exact"] is False
    assert page["total"] >= 4
