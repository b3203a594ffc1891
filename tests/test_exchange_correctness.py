"""Exchange correctness: amounts no column can jam, honest fill prices, reducing always allowed."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peewee import fn

from app.models import (
    EquitySnapshot,
    MarketPrice,
    Order,
    Position,
    SystemEvent,
    Trade,
    TradingSession,
    utcnow,
)
from app.trading.market import record_tick
from app.trading.marking import mark_to_market
from app.trading.matching import process_pending
from app.trading.orders import OrderRequest, place_order
from app.trading.rules import Rules
from app.trading.sessions import pause_session, start_session
from app.trading.valuation import equity_of, marks_for
from tests.test_exchange import RULES, Desk


def test_a_huge_market_order_is_rejected_and_never_blocks_the_queue(client):
    desk = Desk(client, capital="10000")
    desk.tick(65000)
    huge = desk.order("BUY", "1000000000")  # 6.5e13 of notional, far beyond the cash
    small = desk.order("BUY", "0.01")
    assert desk.reload(huge).status == "REJECTED"
    assert "insufficient cash" in desk.reload(huge).error_message
    assert desk.reload(small).status == "FILLED"


def test_a_fill_beyond_the_largest_notional_is_rejected_with_the_reason(client):
    desk = Desk(client, capital="1000000000000000")
    desk.tick("1000000000")  # 1e9 a unit
    order = desk.order("BUY", "10000000")  # 1e16 of notional
    assert desk.reload(order).status == "REJECTED"
    assert "exceeds the largest fill" in desk.reload(order).error_message


def test_a_resting_order_that_cannot_fill_does_not_take_the_tick_down(client):
    desk = Desk(client, capital="10000")
    desk.tick(70000)
    huge = desk.order("BUY", "1000000000", type="LIMIT", price=65000)
    ordinary = desk.order("BUY", "0.01", type="LIMIT", price=65000)
    desk.tick(64000)
    assert desk.reload(huge).status == "REJECTED"
    assert desk.reload(ordinary).status == "FILLED"


def test_large_capital_and_prices_are_marked_and_shown(client):
    rules = replace(RULES, default_take_profit=D(10**9))  # no exit at 2e10
    desk = Desk(client, capital="10000000000", rules=rules)  # 1e10: rounding it used to raise
    desk.tick(65000)
    desk.order("BUY", "1000")
    desk.tick("20000000000")  # 2e10 on a held symbol
    assert mark_to_market(rules, sample=True) == 1
    assert client.get(f"/api/v1/sessions/{desk.session_id}").status_code == 200
    assert EquitySnapshot.select().where(EquitySnapshot.session == desk.session_id).count() > 0


def test_a_liquidity_cap_on_a_huge_volume_works(client):
    desk = Desk(client, rules=replace(RULES, participation=D("0.2")))
    desk.tick(100, volume="100000000000")  # 1e11
    order = desk.order("BUY", 10)
    assert desk.reload(order).status == "FILLED"


def test_an_order_whose_notional_no_column_can_hold_is_400(client):
    desk = Desk(client)
    response = client.post(
        "/api/v1/orders",
        json={
            "symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "price": "10000000000",
            "quantity": "1000000", "session_id": desk.session_id,
        },
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json["field"] == "quantity"
    assert "must not exceed 1,000,000,000,000,000" in response.json["details"]
    assert Order.select().count() == 0


def test_the_rest_of_a_marketable_limit_fills_at_the_market_not_the_limit(client):
    desk = Desk(client, rules=replace(RULES, slippage=D("0.0005"), participation=D("0.2")))
    desk.tick(100, volume=5)
    order = desk.order("BUY", 10, type="LIMIT", price=110)
    assert desk.reload(order).executed_quote_quantity == D("100.05")  # 1 on arrival
    desk.tick(100, volume=5)
    desk.tick(100, volume=5)
    # min(limit 110, 100 x (1 + slippage)) for every later part, as on arrival.
    assert desk.reload(order).executed_quote_quantity == D("300.15")


@st.composite
def limit_and_market(draw):
    side = draw(st.sampled_from(["BUY", "SELL"]))
    last = D(draw(st.integers(50, 150)))
    offset = D(draw(st.integers(0, 20)))
    limit = last + offset if side == "BUY" else last - offset  # marketable at ``last``
    slippage = D(draw(st.sampled_from(["0", "0.0005", "0.01", "0.05"])))
    return side, limit, last, slippage


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=limit_and_market())
def test_arrival_and_a_later_tick_fill_at_the_same_price(client, case):
    side, limit, last, slippage = case
    rules = replace(RULES, slippage=slippage)
    on_arrival = Desk(client, symbol=f"ARR{len(side)}{int(limit)}{int(last)}/USDT", rules=rules)
    on_arrival.tick(last)
    first = on_arrival.order(side, 1, type="LIMIT", price=limit)
    resting = Desk(client, symbol=f"RST{len(side)}{int(limit)}{int(last)}/USDT", rules=rules)
    resting.tick(limit * 2 if side == "BUY" else limit / 2)  # not marketable yet: it rests
    second = resting.order(side, 1, type="LIMIT", price=limit)
    assert resting.reload(second).status == "NEW"
    resting.tick(last)
    arrived, rested = on_arrival.reload(first), resting.reload(second)
    assert arrived.status == rested.status == "FILLED"
    assert arrived.executed_quote_quantity == rested.executed_quote_quantity
    for desk in (on_arrival, resting):
        client.post("/api/v1/trade/stop", json={"session_id": desk.session_id})


def test_a_paused_session_can_still_reduce_through_a_flip(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 5)
    pause_session(desk.session.id)
    flip = desk.order("SELL", 8)  # 5 close the long, 3 would open a short: refused
    flip = desk.reload(flip)
    assert flip.status == "REJECTED"
    assert flip.executed_quantity == 5
    assert "the part that reduces the position (5) was filled" in flip.error_message
    assert desk.position() is None  # flat: the long is closed, no short was opened


def test_a_flip_past_max_position_size_still_closes_the_old_side(client):
    desk = Desk(client, rules=replace(RULES, max_position_size=D("0.1")))
    desk.tick(100)
    desk.order("BUY", 5)  # 500 of 10,000: within 10 %
    flip = desk.reload(desk.order("SELL", 100))  # a 9,500 short would break the limit
    assert (flip.status, flip.executed_quantity) == ("REJECTED", 5)
    assert "max_position_size" in flip.error_message
    assert desk.position() is None


def test_limits_and_samples_value_a_fill_at_the_market_not_the_slipped_price(client):
    desk = Desk(client, rules=replace(RULES, slippage=D("0.01")))
    desk.tick(100)
    desk.order("BUY", 10)  # fills at 101, the market is 100
    sample = EquitySnapshot.select().order_by(EquitySnapshot.id.desc()).first()
    session = TradingSession.get_by_id(desk.session.id)
    # cash 10,000 - 1,010 - fee 1.01; the 10 units are worth 1,000 at the market.
    assert sample.position_value == D(1000)
    assert sample.equity == session.cash + D(1000)


def test_resume_after_a_drawdown_pause_lets_the_session_trade(client):
    desk = Desk(client, rules=replace(RULES, max_drawdown=D("0.15")))
    desk.tick(100)
    desk.order("BUY", 90)
    desk.tick(83)
    mark_to_market(desk.rules, sample=True)
    assert desk.session.status == "PAUSED"
    resumed = client.post("/api/v1/trade/resume", json={"session_id": desk.session_id})
    assert resumed.status_code == 200
    session = desk.session
    assert session.peak_equity == D("8461")  # 991 cash + 90 x 83, the equity at the resume
    assert session.day_start_equity == D(10000)  # the other reference is left alone
    mark_to_market(desk.rules, sample=True)
    assert desk.session.status == "RUNNING"  # not paused again by the same loss
    assert desk.reload(desk.order("BUY", 1)).status == "FILLED"
    reset = SystemEvent.get(SystemEvent.data["status"] == "risk_reference_reset")
    assert reset.data["metadata"]["reference"] == "peak_equity"


def test_resume_after_a_daily_loss_pause_resets_the_days_start(client):
    desk = Desk(client, rules=replace(RULES, max_daily_loss=D("0.05")))
    desk.tick(100)
    desk.order("BUY", 50)
    desk.tick(89)
    mark_to_market(desk.rules, sample=False)
    assert desk.session.status == "PAUSED"
    client.post("/api/v1/trade/resume", json={"session_id": desk.session_id})
    mark_to_market(desk.rules, sample=False)
    session = desk.session
    assert session.status == "RUNNING"
    assert session.day_start_equity == D("9445")  # 5000 - 5 fee + 50 x 89


def test_resuming_a_users_own_pause_resets_nothing(client):
    desk = Desk(client)
    desk.tick(100)
    desk.order("BUY", 10)
    desk.tick(90)
    before = desk.session
    client.post("/api/v1/trade/pause", json={"session_id": desk.session_id})
    client.post("/api/v1/trade/resume", json={"session_id": desk.session_id})
    after = desk.session
    assert (after.peak_equity, after.day_start_equity) == (
        before.peak_equity,
        before.day_start_equity,
    )
    assert (
        not SystemEvent.select()
        .where(SystemEvent.data["status"] == "risk_reference_reset")
        .exists()
    )


def check_invariants(session_ids, rules) -> None:
    """The reference identities, after every step of a random sequence."""
    rounding = D("1e-18")
    for session_id in session_ids:
        session = TradingSession.get_by_id(session_id)
        positions = list(Position.select().where(Position.session == session_id))
        trades = list(Trade.select().where(Trade.session == session_id))
        equity, _, unrealized = equity_of(session, marks_for(session))
        realized = sum((p.realized_pnl for p in positions), D(0))
        # Every stored figure is rounded to 18 places once per fill; an entry price's rounding
        # is multiplied by the quantity held when the position is valued.
        held = sum((p.quantity for p in positions if p.status == "OPEN"), D(0))
        slack = rounding * ((len(trades) + len(positions) + 1) * 4 + 2 * held)
        assert abs((equity - session.initial_capital) - (realized + unrealized)) <= slack
        notional = sum((t.quote_quantity for t in trades), D(0))
        fees = sum((t.commission for t in trades), D(0))
        assert abs(fees - rules.commission_rate * notional) <= rounding * (len(trades) + 1) * 2
        for position in positions:
            attributed = [t for t in trades if t.position_id == position.id]
            direction = D(1) if position.side == "LONG" else D(-1)
            net = sum((t.quantity if t.side == "BUY" else -t.quantity for t in attributed), D(0))
            held = position.quantity * direction if position.status == "OPEN" else D(0)
            assert net == held, (position.status, position.quantity, net)
    for order in Order.select().where(Order.session.in_(session_ids)):
        filled = Trade.select().where(Trade.order == order.id)
        assert sum((t.quantity for t in filled), D(0)) == order.executed_quantity


def test_a_seeded_random_sequence_keeps_every_reference_identity(app):
    rules = replace(RULES, slippage=D("0.0005"), participation=D("0.3"), max_position_size=D(2))
    rng = random.Random(20261125)
    symbols = ["RNDA/USDT", "RNDB/USDT", "RNDC/USDT"]
    sessions = [start_session(s, D(100_000), "PAPER") for s in symbols]
    prices = dict.fromkeys(symbols, D(100))
    for symbol in symbols:
        record_tick(symbol, prices[symbol], volume=D(40))
    process_pending(rules)
    for _ in range(120):
        session = rng.choice(sessions)
        if rng.random() < 0.55:
            kind = rng.choice(["MARKET", "MARKET", "LIMIT", "STOP_LOSS", "TAKE_PROFIT"])
            level = (prices[session.symbol] * D(repr(1 + rng.uniform(-0.03, 0.03)))).quantize(
                D("0.01")
            )
            place_order(
                OrderRequest(
                    symbol=session.symbol,
                    side=rng.choice(["BUY", "SELL"]),
                    type=kind,
                    quantity=D(rng.randint(1, 40)),
                    price=level if kind == "LIMIT" else None,
                    stop_price=level if kind in ("STOP_LOSS", "TAKE_PROFIT") else None,
                    time_in_force=rng.choice(["GTC", "GTC", "IOC", "FOK"]),
                    session_id=session.id,
                )
            )
        else:
            moved = prices[session.symbol] * D(repr(1 + rng.gauss(0, 0.01)))
            prices[session.symbol] = moved.quantize(D("0.0001"))
            record_tick(session.symbol, prices[session.symbol], volume=D(rng.randint(5, 80)))
        process_pending(rules)
        check_invariants([s.id for s in sessions], rules)
    flips = Trade.select(Trade.order).group_by(Trade.order).having(fn.COUNT(Trade.id) > 1)
    assert Trade.select().count() > 50 and flips.count() > 0  # the sequence exercised flips


def test_one_tick_has_one_liquidity_budget_shared_in_price_time_priority(client):
    desk = Desk(client, rules=replace(RULES, participation=D("0.5")))
    desk.tick(100, volume=100)
    low = desk.order("BUY", 40, type="LIMIT", price=95)  # older, but a worse price
    high = desk.order("BUY", 40, type="LIMIT", price=98)
    desk.tick(94, volume=100)  # a budget of 50: the best price first
    assert desk.reload(high).executed_quantity == 40
    assert desk.reload(low).executed_quantity == 10
    late = desk.order("BUY", 30)  # after the tick: only what is left of it (nothing)
    assert desk.reload(late).executed_quantity == 0
    desk.tick(94, volume=20)  # a fresh budget of 10: the order at market goes first
    assert desk.reload(late).executed_quantity == 10
    assert desk.reload(low).executed_quantity == 10


def test_an_arrival_draws_on_what_resting_orders_left_of_the_latest_tick(client):
    desk = Desk(client, rules=replace(RULES, participation=D("0.5")))
    desk.tick(100, volume=100)
    resting = desk.order("BUY", 30, type="LIMIT", price=95)
    desk.tick(95, volume=100)  # budget 50: 30 to the resting order
    assert desk.reload(resting).status == "FILLED"
    first = desk.order("BUY", 15)
    second = desk.order("BUY", 15)
    assert desk.reload(first).executed_quantity == 15
    assert desk.reload(second).executed_quantity == 5  # 20 were left, not 50 each


def test_a_market_order_never_fills_at_a_stale_price(client):
    desk = Desk(client)
    desk.tick(100)
    MarketPrice.update(updated_at=utcnow() - timedelta(minutes=5)).execute()
    waiting = desk.order("BUY", 1)
    immediate = desk.order("BUY", 1, time_in_force="IOC")
    assert desk.reload(waiting).status == "NEW"  # GTC: waits for a fresh tick
    expired = desk.reload(immediate)
    assert expired.status == "EXPIRED"
    assert "max_price_age_seconds" in expired.error_message
    desk.tick(101)
    assert desk.reload(waiting).status == "FILLED"


def test_liquidity_and_price_age_are_patchable(client):
    response = client.patch(
        "/api/v1/config", json={"liquidity_participation": 0.25, "max_price_age_seconds": 30}
    )
    assert response.status_code == 200
    rules = Rules.current()
    assert (rules.participation, rules.max_price_age_seconds) == (D("0.25"), 30)
    bad = client.patch("/api/v1/config", json={"liquidity_participation": 2})
    assert (bad.status_code, bad.json["field"]) == (400, "liquidity_participation")


def test_a_session_that_cannot_be_marked_does_not_stop_the_others(client, monkeypatch):
    from app.trading import marking

    broken, healthy = Desk(client, symbol="BRK/USDT"), Desk(client, symbol="OK/USDT")
    for desk in (broken, healthy):
        desk.tick(100)
        desk.order("BUY", 1)
        desk.tick(110)
    original = marking.equity_of

    def failing(session, marks):
        if str(session.id) == broken.session_id:
            raise ArithmeticError("a figure no column can hold")
        return original(session, marks)

    monkeypatch.setattr(marking, "equity_of", failing)
    marking.mark_to_market(RULES, sample=False)
    marking.mark_to_market(RULES, sample=False)
    assert healthy.position().mark_price == 110
    reports = SystemEvent.select().where(SystemEvent.data["error"] == "Session could not be marked")
    assert reports.count() == 1  # reported once, not every cycle


def test_a_deadlocked_request_is_run_again_not_answered_503(app):
    import peewee

    from app.api.hooks import retry_transient_failures

    class Deadlock(Exception):
        pgcode = "40P01"

    attempts = []

    def view():
        attempts.append(1)
        if len(attempts) < 3:
            raise peewee.OperationalError(Deadlock("deadlock detected"))
        return "done"

    with app.test_request_context("/api/v1/trade/stop", method="POST"):
        assert retry_transient_failures(view)() == "done"
    assert len(attempts) == 3
