"""The audit trail: writes and refused attempts, admin-only, filtered and paged."""

from __future__ import annotations

from dataclasses import replace

from app import create_app
from app.access.audit import AuditEntry
from tests.conftest import with_key
from tests.factories import make_key

START = {"symbol": "BTC/USDT", "initial_capital": 1000}


def entries(client, query: str = "") -> list[dict]:
    response = client.get(f"/api/v1/audit{query}")
    assert response.status_code == 200, response.json
    return response.json["entries"]


def test_writes_are_recorded_with_who_what_and_the_outcome(client, app):
    trader = with_key(app.test_client(), make_key("trader", name="desk"))
    assert trader.post("/api/v1/trade/start", json=START).status_code == 201
    trader.get("/api/v1/orders")  # reads are not audited
    bad = trader.post("/api/v1/orders", json={"symbol": "BTC/USDT", "side": "BUY"})
    assert bad.status_code == 400
    [refused_order, started] = entries(client, "?key=desk")
    assert started["key_name"] == "desk" and started["role"] == "trader"
    assert (started["method"], started["route"], started["status"]) == (
        "POST", "/api/v1/trade/start", 201)  # fmt: skip
    assert started["path"] == "/api/v1/trade/start"
    assert started["client_ip"] == "127.0.0.1"
    assert started["body"] == {"symbol": "BTC/USDT", "initial_capital": 1000}
    assert refused_order["status"] == 400
    assert refused_order["at"] >= started["at"]


def test_refused_attempts_are_recorded_but_not_price_posts_or_heartbeats(client, app):
    anonymous = app.test_client()
    anonymous.patch("/api/v1/config", json={"trading_mode": "live"})
    anonymous.get("/api/v1/orders", headers={"X-API-Key": "wrong"})
    viewer = with_key(app.test_client(), make_key("viewer", name="watcher"))
    viewer.delete("/api/v1/keys/fixture-admin")
    limited = create_app(replace(app.extensions["cryptofunk"]["settings"],
                                 rate_limit_general="1/minute"))  # fmt: skip
    tight = with_key(limited.test_client(), make_key("viewer", name="tight", rate_limit=None))
    tight.get("/api/v1/orders")
    tight.get("/api/v1/orders")
    trader = with_key(app.test_client(), make_key("trader", name="feeder"))
    assert (
        trader.post("/api/v1/market/prices", json={"symbol": "BTC/USDT", "price": 1}).status_code
        == 201
    )
    assert trader.post("/api/v1/agents/bot/heartbeat").status_code in (200, 201)
    rows = entries(client)
    summary = [(row["key_name"], row["method"], row["route"], row["status"]) for row in rows]
    assert summary == [
        ("tight", "GET", "/api/v1/orders", 429),
        ("watcher", "DELETE", "/api/v1/keys/{name}", 403),
        (None, "GET", "/api/v1/orders", 401),
        (None, "PATCH", "/api/v1/config", 401),
    ]
    assert rows[-1]["body"] == {"trading_mode": "live"}  # what the refused caller tried


def test_secret_fields_and_long_text_are_summarised(client):
    client.post("/api/v1/keys", json={"name": "with-limit", "role": "viewer",
                                      "rate_limit": "60/minute"})  # fmt: skip
    body = {"agent_name": "x", "decision_type": "signal", "confidence": 0.5, "model": "m",
            "reasoning": "r" * 5000, "api_key": "sk-should-not-be-kept"}  # fmt: skip
    client.post("/api/v1/decisions", json=body)
    decision, key = entries(client)[:2]
    assert key["body"] == {"name": "with-limit", "role": "viewer", "rate_limit": "60/minute"}
    assert decision["body"]["api_key"] == "[redacted]"
    assert len(decision["body"]["reasoning"]) <= 201
    assert "sk-should-not-be-kept" not in str(AuditEntry.select().dicts()[:])


def test_only_admins_read_the_trail_filtered_and_paged(client, app):
    viewer = with_key(app.test_client(), make_key("viewer"))
    assert viewer.get("/api/v1/audit").status_code == 403
    for _ in range(3):
        client.post("/api/v1/market/prices", json={"symbol": "BTC/USDT", "price": 1})
        client.patch("/api/v1/config", json={"max_positions": 4})
    page = client.get("/api/v1/audit?route=/api/v1/config&limit=2&offset=1").json
    assert (page["count"], page["total"], page["total_exact"]) == (2, 3, True)
    assert {row["route"] for row in page["entries"]} == {"/api/v1/config"}
    everything = entries(client, "?limit=500")
    ids = [row["id"] for row in everything]
    assert ids == sorted(ids, reverse=True)
    assert entries(client, "?status=403")[0]["status"] == 403
    latest = everything[0]["at"]
    assert entries(client, f"?from_date={latest}")[0]["id"] == ids[0]
    assert entries(client, "?to_date=2000-01-01T00:00:00Z") == []
    bad = client.get("/api/v1/audit?status=abc")
    assert bad.status_code == 400 and bad.json["field"] == "status"
    assert (
        client.get(
            "/api/v1/audit?from_date=2030-01-01T00:00:00Z&to_date=2020-01-01T00:00:00Z"
        ).status_code
        == 400
    )


def test_a_committed_write_brings_its_entry_in_the_same_commit(client, app):
    from tests.queries import recorded_queries

    assert client.post("/api/v1/trade/start", json=START).status_code == 201
    order = {"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "price": 1, "quantity": 1}
    with recorded_queries() as statements:
        assert client.post("/api/v1/orders", json=order).status_code == 201
    audit_inserts = [sql for sql in statements if "INSERT INTO audit_log" in sql.replace('"', "")]
    assert len(audit_inserts) == 1
    assert audit_inserts[0].endswith("; COMMIT")  # one round trip, one transaction with the work
    [placed] = entries(client, "?route=/api/v1/orders")
    assert (placed["method"], placed["status"], placed["body"]["side"]) == ("POST", 201, "BUY")


def test_a_write_whose_entry_cannot_be_stored_is_not_committed(client, app):
    from app.db import db
    from app.models import Order

    assert client.post("/api/v1/trade/start", json=START).status_code == 201
    db.execute_sql(
        "ALTER TABLE audit_log ADD CONSTRAINT refuse_orders CHECK (route <> '/api/v1/orders')"
    )
    try:
        order = {"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "price": 1, "quantity": 1}
        response = client.post("/api/v1/orders", json=order)
        assert response.status_code == 409  # the constraint the entry broke, as any other
        assert Order.select().count() == 0  # no write without its audit entry
    finally:
        db.execute_sql("ALTER TABLE audit_log DROP CONSTRAINT refuse_orders")
