"""Positions: status/session/symbol filters, paging, latest by symbol."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.factories import make_position, make_session

POSITION_FIELDS = {
    "id", "session_id", "symbol", "exchange", "side", "status", "entry_price", "exit_price",
    "quantity", "entry_time", "exit_time", "stop_loss", "take_profit", "realized_pnl",
    "unrealized_pnl", "fees", "entry_reason", "exit_reason", "created_at", "updated_at",
}  # fmt: skip


def test_list_defaults_to_open_positions_with_every_field(client):
    session = make_session()
    open_position = make_position(
        session,
        stop_loss=Decimal("40000"),
        take_profit=Decimal("45000"),
        unrealized_pnl=Decimal("150.50"),
        fees=Decimal("4.20"),
        entry_reason="RSI oversold + MACD bullish crossover",
    )
    make_position(session, status="CLOSED", realized_pnl=Decimal("10"))
    body = client.get("/api/v1/positions").json
    assert body["count"] == 1
    position = body["positions"][0]
    assert set(position) == POSITION_FIELDS
    assert position["id"] == str(open_position.id)
    assert position["unrealized_pnl"] == 150.5
    assert position["exit_price"] is None
    assert position["side"] == "LONG"


@pytest.mark.parametrize(("status", "expected"), [("open", 1), ("CLOSED", 2), ("all", 3)])
def test_status_filter(client, status, expected):
    session = make_session()
    make_position(session)
    make_position(session, status="CLOSED")
    make_position(session, status="CLOSED")
    assert client.get(f"/api/v1/positions?status={status}").json["count"] == expected


def test_session_and_symbol_filters(client):
    first = make_session()
    second = make_session(symbol="ETH/USDT")
    mine = make_position(first)
    make_position(second)
    body = client.get(f"/api/v1/positions?session_id={first.id}").json
    assert [p["id"] for p in body["positions"]] == [str(mine.id)]
    assert client.get("/api/v1/positions?symbol=eth-usdt").json["count"] == 1
    assert client.get("/api/v1/positions?status=flat").status_code == 400
    assert client.get("/api/v1/positions?session_id=1").json["error"] == "invalid session_id format"


@pytest.mark.parametrize("path", ["BTC/USDT", "BTC%2FUSDT", "BTC-USDT", "btc-usdt"])
def test_latest_position_by_symbol_accepts_every_spelling(client, path):
    session = make_session()
    make_position(session, status="CLOSED")
    current = make_position(session)
    response = client.get(f"/api/v1/positions/{path}")
    assert response.status_code == 200
    assert response.json["position"]["id"] == str(current.id)


def test_latest_position_prefers_the_open_one_over_a_newer_closed_one(client):
    session = make_session()
    open_position = make_position(session)
    make_position(make_session(status="STOPPED"), status="CLOSED")
    assert client.get("/api/v1/positions/BTC/USDT").json["position"]["id"] == str(open_position.id)


def test_latest_position_without_open_one_is_the_most_recent(client):
    session = make_session()
    make_position(session, status="CLOSED")
    newest_closed = make_position(session, status="CLOSED")
    assert client.get("/api/v1/positions/BTC/USDT").json["position"]["id"] == str(newest_closed.id)


def test_latest_position_by_session(client):
    first = make_session()
    make_position(first)
    other = make_session(status="STOPPED")
    theirs = make_position(other, status="CLOSED")
    response = client.get(f"/api/v1/positions/BTC-USDT?session_id={other.id}")
    assert response.json["position"]["id"] == str(theirs.id)
    missing = client.get(f"/api/v1/positions/BTC-USDT?session_id={uuid.uuid4()}")
    assert missing.status_code == 404


def test_latest_position_errors(client):
    response = client.get("/api/v1/positions/ETH/USDT")
    assert response.status_code == 404
    assert response.json == {"error": "position not found", "symbol": "ETH/USDT"}
    bad = client.get("/api/v1/positions/not_a_symbol")
    assert bad.status_code == 400
    assert bad.json["error"] == "invalid symbol format"
