"""Fills: listing with filters."""

from __future__ import annotations

from decimal import Decimal

from tests.factories import make_order, make_session, make_trade


def test_trades_list_with_filters(client):
    btc = make_session()
    eth = make_session(symbol="ETH/USDT")
    order = make_order(btc, status="FILLED")
    fill = make_trade(order, commission=Decimal("4.20"))
    other = make_trade(make_order(eth, status="FILLED"), price=Decimal("3000"))
    body = client.get("/api/v1/trades").json
    assert body["count"] == 2
    by_order = client.get(f"/api/v1/trades?order_id={order.id}").json["trades"]
    assert [t["id"] for t in by_order] == [str(fill.id)]
    assert by_order[0]["commission"] == 4.2
    assert set(by_order[0]) >= {"order_id", "session_id", "price", "quantity", "executed_at"}
    by_session = client.get(f"/api/v1/trades?session_id={eth.id}").json["trades"]
    assert [t["id"] for t in by_session] == [str(other.id)]
    assert client.get("/api/v1/trades?symbol=ETH-USDT").json["count"] == 1
    assert client.get("/api/v1/trades?order_id=x").json["error"] == "invalid order_id format"
