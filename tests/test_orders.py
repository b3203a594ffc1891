"""Orders: entry validation, session resolution, listing filters, detail and cancellation."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest

from app.models import Order, utcnow
from tests.factories import make_order, make_session, make_trade

ORDER_FIELDS = {
    "id", "session_id", "position_id", "exchange_order_id", "symbol", "exchange", "side", "type",
    "status", "price", "stop_price", "quantity", "executed_quantity", "executed_quote_quantity",
    "time_in_force", "source", "placed_at", "filled_at", "canceled_at", "expired_at",
    "error_message", "created_at", "updated_at",
}  # fmt: skip


def post_order(client, **body):
    payload = {"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": 0.1}
    payload.update(body)
    return client.post("/api/v1/orders", json=payload)


def test_market_order_is_created_new_on_the_active_session(client):
    session = make_session()
    response = post_order(client, price=None)
    assert response.status_code == 201
    body = response.json
    assert body["message"] == "Order created successfully"
    order = body["order"]
    assert set(order) == ORDER_FIELDS
    assert order["status"] == "NEW"
    assert order["session_id"] == str(session.id)
    assert order["quantity"] == 0.1
    assert order["executed_quantity"] == 0
    assert order["time_in_force"] == "GTC"
    assert order["placed_at"].endswith("Z")
    stored = Order.get_by_id(uuid.UUID(order["id"]))
    assert stored.quantity == Decimal("0.1")


def test_limit_order_keeps_exact_decimal_price(client):
    make_session()
    response = post_order(client, type="LIMIT", price=41500.12345678, quantity="0.00012345")
    assert response.status_code == 201
    stored = Order.get_by_id(uuid.UUID(response.json["order"]["id"]))
    assert stored.price == Decimal("41500.12345678")
    assert stored.quantity == Decimal("0.00012345")


def test_enums_accept_any_case_and_return_upper_case(client):
    make_session()
    order = post_order(client, side="sell", type="Limit", price=45000, time_in_force="ioc").json
    assert (order["order"]["side"], order["order"]["type"]) == ("SELL", "LIMIT")
    assert order["order"]["time_in_force"] == "IOC"


@pytest.mark.parametrize("symbol", ["btc/usdt", "BTC-USDT", "btc-usdt"])
def test_symbol_spellings_normalise(client, symbol):
    make_session()
    assert post_order(client, symbol=symbol).json["order"]["symbol"] == "BTC/USDT"


@pytest.mark.parametrize(
    ("body", "field", "details"),
    [
        ({"type": "LIMIT"}, "price", "Price is required for LIMIT orders"),
        ({"type": "STOP_LOSS_LIMIT", "stop_price": 40000}, "price", None),
        ({"type": "STOP_LOSS"}, "stop_price", "stop_price is required for STOP_LOSS orders"),
        ({"type": "TAKE_PROFIT_LIMIT", "price": 46000}, "stop_price", None),
        ({"type": "MARKET", "price": 42000}, "price", "price must be null for MARKET orders"),
        ({"side": "HOLD"}, "side", "must be one of: BUY, SELL"),
        ({"type": "ICEBERG"}, "type", None),
        ({"quantity": 0}, "quantity", "must be greater than 0"),
        ({"quantity": -1}, "quantity", "must be greater than 0"),
        ({"quantity": "abc"}, "quantity", "Not a valid number."),
        ({"quantity": True}, "quantity", "Not a valid number."),
        ({"quantity": 1e300}, "quantity", None),
        ({"quantity": "0.0000000000000000001"}, "quantity", None),
        ({"time_in_force": "DAY"}, "time_in_force", None),
        ({"symbol": "BTCUSDT"}, "symbol", "must be a trading pair such as BTC/USDT"),
        ({"symbol": None}, "symbol", None),
        ({"leverage": 10}, "leverage", "Unknown field."),
    ],
)
def test_invalid_order_bodies_are_rejected_naming_the_field(client, body, field, details):
    make_session()
    response = post_order(client, **body)
    assert response.status_code == 400
    assert response.json["error"] == "invalid request body"
    assert response.json["field"] == field
    if details:
        assert response.json["details"] == details
    assert Order.select().count() == 0


def test_missing_required_fields_are_reported(client):
    response = client.post("/api/v1/orders", json={})
    assert response.status_code == 400
    assert response.json["error"] == "invalid request body"
    assert response.json["details"] == "Missing data for required field."


@pytest.mark.parametrize(
    "raw", ['{"quantity": NaN}', '{"quantity": Infinity}', "{bad json", "[1, 2"]
)
def test_malformed_json_and_non_finite_numbers_are_rejected(client, raw):
    make_session()
    response = client.post("/api/v1/orders", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == "malformed JSON"
    assert Order.select().count() == 0


def test_body_that_is_not_an_object_is_rejected(client):
    response = client.post("/api/v1/orders", json=[1, 2])
    assert response.status_code == 400
    assert response.json["details"] == "the body must be a JSON object"


def test_order_without_any_session_says_to_start_one(client):
    response = post_order(client)
    assert response.status_code == 400
    assert response.json["error"] == "no active trading session"
    assert "POST /api/v1/trade/start" in response.json["details"]


def test_order_on_explicit_session_may_trade_another_symbol(client):
    session = make_session(symbol="ETH/USDT")
    response = post_order(client, session_id=str(session.id))
    assert response.status_code == 201
    assert response.json["order"]["symbol"] == "BTC/USDT"
    assert response.json["order"]["session_id"] == str(session.id)


def test_order_on_paused_session_is_accepted_for_the_engine_to_judge(client):
    session = make_session(status="PAUSED")
    response = post_order(client, session_id=str(session.id), side="SELL")
    assert response.status_code == 201
    assert response.json["order"]["status"] == "NEW"


def test_order_on_unknown_session_is_404(client):
    response = post_order(client, session_id=str(uuid.uuid4()))
    assert response.status_code == 404
    assert response.json["error"] == "trading session not found"


def test_order_on_stopped_session_is_refused(client):
    session = make_session(status="STOPPED")
    response = post_order(client, session_id=str(session.id))
    assert response.status_code == 400
    assert response.json["error"] == "trading session is stopped"
    assert Order.select().count() == 0


def test_get_order_returns_full_order(client):
    order = make_order()
    response = client.get(f"/api/v1/orders/{order.id}")
    assert response.status_code == 200
    assert set(response.json["order"]) == ORDER_FIELDS
    assert response.json["order"]["id"] == str(order.id)


def test_get_order_with_bad_uuid_is_400(client):
    response = client.get("/api/v1/orders/not-a-uuid")
    assert response.status_code == 400
    assert response.json == {"error": "invalid order_id format", "field": "order_id"}


def test_get_unknown_order_is_404_with_order_id(client):
    missing = "123e4567-e89b-12d3-a456-426614174000"
    response = client.get(f"/api/v1/orders/{missing}")
    assert response.status_code == 404
    assert response.json == {"error": "order not found", "order_id": missing}


def test_list_filters_combine(client):
    btc = make_session()
    eth = make_session(symbol="ETH/USDT")
    wanted = make_order(btc, status="FILLED")
    make_order(btc, status="NEW")
    make_order(eth, status="FILLED")
    response = client.get(f"/api/v1/orders?session_id={btc.id}&status=filled&symbol=BTC-USDT")
    assert response.status_code == 200
    assert [o["id"] for o in response.json["orders"]] == [str(wanted.id)]
    assert response.json["count"] == 1
    assert client.get("/api/v1/orders?symbol=ETH%2FUSDT").json["count"] == 1
    assert client.get("/api/v1/orders?side=SELL").json["count"] == 0


def test_list_pages_newest_first(client):
    session = make_session()
    ids = [str(make_order(session).id) for _ in range(5)]
    first = client.get("/api/v1/orders?limit=2").json
    second = client.get("/api/v1/orders?limit=2&offset=2").json
    assert [o["id"] for o in first["orders"]] == ids[::-1][:2]
    assert [o["id"] for o in second["orders"]] == ids[::-1][2:4]


@pytest.mark.parametrize(
    ("query", "error", "field"),
    [
        ("session_id=nope", "invalid session_id format", "session_id"),
        ("status=DONE", "invalid query parameter", "status"),
        ("limit=0", "invalid query parameter", "limit"),
        ("limit=501", "invalid query parameter", "limit"),
        ("offset=-1", "invalid query parameter", "offset"),
        ("limit=ten", "invalid query parameter", "limit"),
        ("symbol=BTC", "invalid query parameter", "symbol"),
        ("sesion_id=x", "invalid query parameter", "sesion_id"),
    ],
)
def test_list_rejects_bad_query_parameters(client, query, error, field):
    response = client.get(f"/api/v1/orders?{query}")
    assert response.status_code == 400
    assert response.json["error"] == error
    assert response.json["field"] == field


def test_cancel_new_order(client):
    order = make_order()
    response = client.delete(f"/api/v1/orders/{order.id}")
    assert response.status_code == 200
    assert response.json["message"] == "Order cancelled successfully"
    assert response.json["order"]["status"] == "CANCELED"
    assert response.json["order"]["canceled_at"].endswith("Z")
    assert Order.get_by_id(order.id).status == "CANCELED"


def test_cancel_partially_filled_order_keeps_the_fill(client):
    order = make_order(status="PARTIALLY_FILLED", executed_quantity=Decimal("0.04"))
    make_trade(order, quantity=Decimal("0.04"), quote_quantity=Decimal("1680"))
    response = client.delete(f"/api/v1/orders/{order.id}")
    assert response.status_code == 200
    assert response.json["order"]["executed_quantity"] == 0.04


@pytest.mark.parametrize("status", ["FILLED", "CANCELED", "REJECTED", "EXPIRED"])
def test_cancel_finished_order_is_400(client, status):
    order = make_order(status=status)
    response = client.delete(f"/api/v1/orders/{order.id}")
    assert response.status_code == 400
    assert response.json["error"] == "order cannot be cancelled"
    assert response.json["details"] == f"order is already {status}"
    assert response.json["order_id"] == str(order.id)
    assert Order.get_by_id(order.id).status == status


def test_cancel_unknown_order_is_404_and_bad_id_400(client):
    assert client.delete(f"/api/v1/orders/{uuid.uuid4()}").status_code == 404
    assert client.delete("/api/v1/orders/123").json["error"] == "invalid order_id format"


def test_orders_are_refused_with_503_while_the_engine_is_behind(client):
    session = make_session()
    make_order(session, placed_at=utcnow() - timedelta(seconds=30))  # never looked at
    response = post_order(client)
    assert response.status_code == 503
    assert response.json["error"] == "order intake is behind"
    assert "oldest unprocessed order is 30" in response.json["details"]
    assert int(response.headers["Retry-After"]) >= 1
    assert Order.select().count() == 1  # refused at once: nothing was written
    by_id = post_order(client, symbol="ETH/USDT", session_id=str(session.id))
    assert (by_id.status_code, by_id.json["error"]) == (503, "order intake is behind")
    nowhere = post_order(client, symbol="SOL/USDT")  # no session either: the 503 comes first
    assert (nowhere.status_code, nowhere.json["error"]) == (503, "order intake is behind")
    assert Order.select().count() == 1  # refused at once: nothing was written
    Order.update(accepted_at=utcnow()).execute()  # the engine caught up
    assert post_order(client).status_code == 201
    assert post_order(client, symbol="ETH/USDT", session_id=str(session.id)).status_code == 201


def test_an_order_is_three_round_trips(client):
    """The session lookup carries the back-pressure check and the transaction's BEGIN; the
    INSERT; the audit row rides the COMMIT. Nothing else reaches the database."""
    from tests.queries import recorded_queries

    make_session()
    post_order(client)  # warm: the key is looked up and cached once
    from app.access.authenticate import key_cache

    key_cache.trust(True)
    try:
        assert post_order(client).status_code == 201
        with recorded_queries() as statements:
            assert post_order(client).status_code == 201
    finally:
        key_cache.trust(False)
    assert len(statements) == 3, statements
    session_lookup, insert, audit_and_commit = statements
    assert session_lookup.startswith("BEGIN; ") and "trading_sessions" in session_lookup
    assert "accepted_at IS NULL" in session_lookup  # the back-pressure age comes with it
    assert insert.startswith('INSERT INTO "orders"')
    assert "audit_log" in audit_and_commit and audit_and_commit.endswith("; COMMIT")


def test_the_openapi_document_says_a_market_order_takes_no_price(client):
    schema = client.get("/api/v1/openapi.json").json["components"]["schemas"]
    price = next(s for name, s in schema.items() if name.startswith("CreateOrder"))["properties"]
    assert "must be null or absent for MARKET" in price["price"]["description"]
