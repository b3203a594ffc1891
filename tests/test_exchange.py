"""The paper exchange on hand-computed scenarios: every figure is an exact Decimal."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal as D

import pytest

from app.models import EquitySnapshot, Order, Position, SystemEvent, Trade, TradingSession
from app.trading.marking import mark_to_market
from app.trading.matching import process_pending
from app.trading.rules import Rules

# No slippage and roomy limits unless a test is about them; commission 0.1 %.
RULES = Rules(
    slippage=D(0),
    commission_rate=D("0.001"),
    max_position_size=D(1),
    max_positions=3,
    max_daily_loss=D(1),
    max_drawdown=D(1),
    default_stop_loss=D("0.5"),
    default_take_profit=D("5"),
)


class Desk:
    """Drives one session through the API and the exchange, like a trader and the engine."""

    def __init__(self, client, capital="10000", symbol="BTC/USDT", rules=RULES):
        self.client = client
        self.symbol = symbol
        self.rules = rules
        response = client.post(
            "/api/v1/trade/start", json={"symbol": symbol, "initial_capital": capital}
        )
        assert response.status_code == 201, response.json
        self.session_id = response.json["session_id"]

    def tick(self, price, volume=None, symbol=None):
        body = {"symbol": symbol or self.symbol, "price": str(price)}
        if volume is not None:
            body["volume"] = str(volume)
        assert self.client.post("/api/v1/market/prices", json=body).status_code == 201
        process_pending(self.rules)

    def order(self, side, quantity, type="MARKET", **extra) -> Order:
        body = {
            "symbol": extra.pop("symbol", self.symbol),
            "side": side,
            "type": type,
            "quantity": str(quantity),
            "session_id": self.session_id,
        }
        body.update({key: str(value) for key, value in extra.items()})
        response = self.client.post("/api/v1/orders", json=body)
        assert response.status_code == 201, response.json
        process_pending(self.rules)
        return Order.get_by_id(uuid.UUID(response.json["order"]["id"]))

    @property
    def session(self) -> TradingSession:
        return TradingSession.get_by_id(uuid.UUID(self.session_id))

    def position(self, status="OPEN") -> Position | None:
        return (
            Position.select()
            .where(Position.session == self.session_id, Position.status == status)
            .order_by(Position.entry_time.desc())
            .first()
        )

    def reload(self, order: Order) -> Order:
        return Order.get_by_id(order.id)


def test_long_round_trip_with_fees(client):
    desk = Desk(client)
    desk.tick(100)
    buy = desk.order("BUY", 10)
    assert (buy.status, buy.executed_quantity, buy.executed_quote_quantity) == ("FILLED", 10, 1000)
    position = desk.position()
    assert (position.side, position.quantity, position.entry_price) == ("LONG", 10, 100)
    assert (position.fees, position.realized_pnl) == (D("1"), D("-1"))
    assert desk.session.cash == D("8999")
    desk.tick(110)
    desk.order("SELL", 10)
    closed = desk.position("CLOSED")
    assert (closed.exit_price, closed.quantity, closed.fees) == (110, 10, D("2.1"))
    assert closed.realized_pnl == D("97.9")
    assert closed.exit_reason == "closed by order"
    assert desk.position() is None
    assert desk.session.cash == D("10097.9")
    fills = list(Trade.select().where(Trade.session == desk.session_id).order_by(Trade.executed_at))
    assert [(t.side, t.price, t.commission) for t in fills] == [
        ("BUY", 100, D("1")),
        ("SELL", 110, D("1.1")),
    ]


def test_short_round_trip(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("SELL", 10)
    short = desk.position()
    assert (short.side, short.quantity, short.entry_price) == ("SHORT", 10, 100)
    assert desk.session.cash == D("10999")
    desk.tick(90)
    desk.order("BUY", 10)
    closed = desk.position("CLOSED")
    assert closed.realized_pnl == D("98.1")
    assert desk.session.cash == D("10098.1")


def test_partial_close_keeps_entry_and_realizes_the_closed_part(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(110)
    desk.order("SELL", 4)
    position = desk.position()
    assert (position.quantity, position.entry_price) == (6, 100)
    assert position.realized_pnl == D("38.56")  # -1 + 40 - 0.44
    assert position.exit_price == 110
    assert desk.session.cash == D("9438.56")


def test_crossing_zero_flips_to_short_and_splits_the_fee(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(110)
    desk.order("SELL", 15)
    closed = desk.position("CLOSED")
    assert closed.realized_pnl == D("97.9")  # -1 + 100 - 1.1 (10/15 of the 1.65 fee)
    short = desk.position()
    assert (short.side, short.quantity, short.entry_price) == ("SHORT", 5, 110)
    assert (short.fees, short.realized_pnl) == (D("0.55"), D("-0.55"))
    assert desk.session.cash == D("10647.35")


def test_averaging_in_weights_the_entry_price(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(110)
    desk.order("BUY", 10)
    position = desk.position()
    assert (position.quantity, position.entry_price, position.fees) == (20, 105, D("2.1"))
    assert desk.session.cash == D("7897.9")


def test_resting_limit_fills_at_the_better_of_its_limit_and_the_market(client):
    desk = Desk(client)
    desk.tick(100)
    limit = desk.order("BUY", 10, type="LIMIT", price=95)
    assert desk.reload(limit).status == "NEW"
    desk.tick(96)
    assert desk.reload(limit).status == "NEW"
    desk.tick(94)  # the market gapped through the limit: the buyer gets 94, not 95
    filled = desk.reload(limit)
    assert (filled.status, filled.executed_quote_quantity) == ("FILLED", 940)
    assert Trade.get(Trade.order == limit.id).commission == D("0.94")


def test_marketable_limit_takes_the_better_market_price_with_slippage(client):
    desk = Desk(client, rules=replace(RULES, slippage=D("0.0005")))
    desk.tick(100)
    order = desk.order("BUY", 10, type="LIMIT", price=105)
    assert Trade.get(Trade.order == order.id).price == D("100.05")
    sell = desk.order("SELL", 10, type="LIMIT", price="99.99")
    assert Trade.get(Trade.order == sell.id).price == D("99.99")  # the limit beats 99.95


def test_market_order_slips_adversely(client):
    desk = Desk(client, rules=replace(RULES, slippage=D("0.0005")))
    desk.tick(100)
    assert Trade.get(Trade.order == desk.order("BUY", 1).id).price == D("100.05")
    assert Trade.get(Trade.order == desk.order("SELL", 1).id).price == D("99.95")


def test_market_order_waits_for_the_first_price_but_immediate_ones_expire(client):
    desk = Desk(client)
    waiting = desk.order("BUY", 1)
    ioc = desk.order("BUY", 1, time_in_force="IOC")
    fok = desk.order("BUY", 1, time_in_force="FOK")
    assert desk.reload(waiting).status == "NEW"
    assert desk.reload(ioc).status == "EXPIRED"
    assert desk.reload(fok).status == "EXPIRED"
    assert "no market price" in desk.reload(ioc).error_message
    desk.tick(100)
    assert desk.reload(waiting).status == "FILLED"


def test_unmarketable_ioc_and_fok_limits_expire(client):
    desk = Desk(client)
    desk.tick(100)
    for tif in ("IOC", "FOK"):
        order = desk.reload(desk.order("BUY", 1, type="LIMIT", price=90, time_in_force=tif))
        assert (order.status, order.executed_quantity) == ("EXPIRED", 0)
        assert order.expired_at is not None


def test_stop_loss_order_triggers_then_fills_as_market(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    stop = desk.order("SELL", 10, type="STOP_LOSS", stop_price=95)
    desk.tick(96)
    assert desk.reload(stop).status == "NEW"
    desk.tick(94)
    stop = desk.reload(stop)
    assert (stop.status, stop.executed_quote_quantity) == ("FILLED", 940)
    assert stop.triggered_at is not None


def test_take_profit_limit_triggers_then_rests_and_fills_at_the_better_price(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    order = desk.order("SELL", 10, type="TAKE_PROFIT_LIMIT", stop_price=110, price=112)
    desk.tick(110)
    order = desk.reload(order)
    assert (order.status, order.triggered_at is not None) == ("NEW", True)
    desk.tick(111)
    assert desk.reload(order).status == "NEW"
    desk.tick(113)
    assert desk.reload(order).executed_quote_quantity == 1130


def test_position_stop_loss_and_take_profit_close_it(client):
    rules = replace(RULES, default_stop_loss=D("0.02"), default_take_profit=D("0.05"))
    desk = Desk(client, rules=rules)
    desk.tick(100)
    desk.order("BUY", 10)
    position = desk.position()
    assert (position.stop_loss, position.take_profit) == (98, 105)
    desk.tick(98.5)
    assert desk.position() is not None
    desk.tick(97.5)
    closed = desk.position("CLOSED")
    assert closed.exit_price == D("97.5")
    assert closed.exit_reason.startswith("stop_loss hit")
    exit_order = Order.get(Order.position == closed.id, Order.source == "stop_loss")
    assert exit_order.status == "FILLED"
    desk.order("BUY", 10)
    desk.tick(106)
    assert desk.position("CLOSED").exit_reason.startswith("take_profit hit")


def test_short_position_protective_levels_are_mirrored(client):
    rules = replace(RULES, default_stop_loss=D("0.02"), default_take_profit=D("0.05"))
    desk = Desk(client, rules=rules)
    desk.tick(100)
    desk.order("SELL", 10)
    assert (desk.position().stop_loss, desk.position().take_profit) == (102, 95)
    desk.tick(94)
    assert desk.position("CLOSED").exit_reason.startswith("take_profit hit")


def test_liquidity_cap_fills_partially_across_ticks(client):
    desk = Desk(client, rules=replace(RULES, participation=D("0.1")))
    desk.tick(100, volume=50)
    order = desk.order("BUY", 12)
    order = desk.reload(order)
    assert (order.status, order.executed_quantity) == ("PARTIALLY_FILLED", 5)
    desk.tick(102, volume=50)
    assert desk.reload(order).executed_quantity == 10
    desk.tick(104, volume=50)
    order = desk.reload(order)
    assert (order.status, order.executed_quantity) == ("FILLED", 12)
    assert order.executed_quote_quantity == D("1218")  # 5x100 + 5x102 + 2x104
    assert desk.position().entry_price == D("101.5")


def test_cancel_of_partial_fill_keeps_what_was_filled(client):
    desk = Desk(client, rules=replace(RULES, participation=D("0.1")))
    desk.tick(100, volume=30)
    order = desk.order("BUY", 10)
    response = client.delete(f"/api/v1/orders/{order.id}")
    assert response.json["order"]["status"] == "CANCELED"
    assert response.json["order"]["executed_quantity"] == 3
    desk.tick(100, volume=30)
    assert desk.reload(order).executed_quantity == 3
    assert desk.position().quantity == 3


def test_ioc_under_cap_keeps_the_partial_fill_and_fok_takes_nothing(client):
    desk = Desk(client, rules=replace(RULES, participation=D("0.1")))
    desk.tick(100, volume=30)
    ioc = desk.reload(desk.order("BUY", 10, time_in_force="IOC"))
    assert (ioc.status, ioc.executed_quantity) == ("EXPIRED", 3)
    fok = desk.reload(desk.order("BUY", 10, time_in_force="FOK"))
    assert (fok.status, fok.executed_quantity) == ("EXPIRED", 0)


def test_insufficient_cash_rejects_the_buy(client):
    desk = Desk(client, capital="1000")
    desk.tick(100)
    order = desk.reload(desk.order("BUY", 10))  # needs 1001 with the fee
    assert order.status == "REJECTED"
    assert order.error_message.startswith("insufficient cash")
    assert desk.session.cash == 1000
    assert desk.position() is None


def test_max_position_size_rejects_and_names_the_limit(client):
    desk = Desk(client, rules=replace(RULES, max_position_size=D("0.2")))
    desk.tick(100)
    rejected = desk.reload(desk.order("BUY", 30))
    assert rejected.status == "REJECTED"
    assert rejected.error_message.startswith("max_position_size")
    assert desk.reload(desk.order("BUY", 19)).status == "FILLED"


def test_max_positions_counts_open_positions_of_the_session(client):
    desk = Desk(client, rules=replace(RULES, max_positions=1))
    desk.tick(100)
    desk.tick(50, symbol="ETH/USDT")
    desk.order("BUY", 1)
    rejected = desk.reload(desk.order("BUY", 1, symbol="ETH/USDT"))
    assert rejected.status == "REJECTED"
    assert rejected.error_message.startswith("max_positions")


def test_drawdown_pauses_the_session_and_refuses_entries_but_not_exits(client):
    desk = Desk(client, rules=replace(RULES, max_drawdown=D("0.15")))
    desk.tick(100)
    desk.order("BUY", 90)  # cash 991, equity 9991
    desk.tick(84)
    mark_to_market(desk.rules, sample=True)
    assert desk.session.status == "RUNNING"  # 991 + 7560 = 8551: 14.49 % below 10000
    desk.tick(83)
    mark_to_market(desk.rules, sample=True)
    session = desk.session
    assert session.status == "PAUSED"
    assert session.status_reason.startswith("max_drawdown breached: 15.39%")
    assert session.max_drawdown == D("0.1539")
    error = SystemEvent.get(SystemEvent.type == "error")
    assert error.data["metadata"]["session_id"] == desk.session_id
    entry = desk.reload(desk.order("BUY", 1))
    assert (entry.status, entry.error_message.startswith("session paused")) == ("REJECTED", True)
    assert desk.reload(desk.order("SELL", 10)).status == "FILLED"


def test_daily_loss_pauses_the_session(client):
    desk = Desk(client, rules=replace(RULES, max_daily_loss=D("0.05")))
    desk.tick(100)
    desk.order("BUY", 50)
    desk.tick(89)
    mark_to_market(desk.rules, sample=False)
    assert desk.session.status_reason.startswith("max_daily_loss breached")


def test_marking_updates_unrealized_pnl_and_samples_equity(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(103)
    mark_to_market(desk.rules, sample=True)
    position = desk.position()
    assert (position.unrealized_pnl, position.mark_price) == (30, 103)
    latest = (
        EquitySnapshot.select()
        .where(EquitySnapshot.session == desk.session_id)
        .order_by(EquitySnapshot.id.desc())
        .first()
    )
    assert latest.equity == D("10029")  # cash 8999 + 10 x 103
    assert (latest.realized_pnl, latest.unrealized_pnl) == (-1, 30)
    detail = client.get(f"/api/v1/sessions/{desk.session_id}").json["session"]
    assert detail["equity"] == 10029
    assert detail["total_pnl"] == 29
    assert detail["cash"] == 8999


def test_stop_closes_positions_at_market_and_records_figures(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(105)
    body = client.post("/api/v1/trade/stop", json={"session_id": desk.session_id}).json
    # The stop fills at the configured 5 bps slippage: 105 x 0.9995 = 104.9475.
    fee = D("104.9475") * 10 * D("0.001")
    expected = D("8999") + D("1049.475") - fee
    assert D(str(body["final_capital"])) == expected.quantize(D("1e-8"))
    assert body["total_trades"] == 2
    assert (body["winning_trades"], body["losing_trades"]) == (1, 0)
    closed = desk.position("CLOSED")
    assert closed.exit_reason == "session stopped"


def test_equity_curve_endpoint(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(101)
    mark_to_market(desk.rules, sample=True)
    body = client.get(f"/api/v1/sessions/{desk.session_id}/equity").json
    assert body["session_id"] == desk.session_id
    assert [point["equity"] for point in body["points"]] == [9999, 10009]
    assert set(body["points"][0]) >= {"timestamp", "equity", "cash", "realized_pnl"}
    missing = client.get(f"/api/v1/sessions/{uuid.uuid4()}/equity")
    assert missing.status_code == 404


@pytest.mark.parametrize("status", ["FILLED", "CANCELED"])
def test_engine_never_touches_finished_orders(client, status):
    desk = Desk(client)
    order = desk.order("BUY", 1)
    Order.update(
        status=status,
        filled_at=order.placed_at,
        canceled_at=order.placed_at if status == "CANCELED" else None,
    ).where(Order.id == order.id).execute()
    desk.tick(100)
    assert Trade.select().where(Trade.order == order.id).count() == 0
