"""Properties of the exchange over random order and price sequences (hypothesis)."""

from __future__ import annotations

import uuid
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.db import db
from app.models import Order, Position, Trade, TradingSession
from app.trading.market import record_tick
from app.trading.matching import process_pending
from app.trading.orders import OrderRequest, place_order
from app.trading.portfolio import Book, apply_fill
from app.trading.rules import Rules
from app.trading.sessions import start_session
from app.trading.valuation import equity_of, marks_for

prices = st.decimals(min_value=D("1"), max_value=D("1000"), places=2)
quantities = st.decimals(min_value=D("0.01"), max_value=D("20"), places=2)
sides = st.sampled_from(["BUY", "SELL"])


@given(st.lists(st.tuples(sides, quantities, prices), min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_book_keeps_cash_positions_and_pnl_consistent(fills):
    """cash + position value + fees paid == initial capital + total PnL (before fees)."""
    book, cash, fees_paid, gross_closed = Book(), D(10_000), D(0), D(0)
    for side, quantity, price in fills:
        fee = price * quantity * D("0.001")
        effect = apply_fill(book, side, quantity, price, fee)
        if effect.closed is not None:
            gross_closed += effect.closed.realized_pnl + effect.closed.fees
        book = effect.open
        cash += effect.cash_delta
        fees_paid += fee
        mark = price
        gross_total = gross_closed + (book.realized_pnl + book.fees) + book.unrealized(mark)
        position_value = book.quantity * mark
        assert abs(cash + position_value + fees_paid - (D(10_000) + gross_total)) < D("1e-12")


@given(
    st.lists(
        st.tuples(
            sides,
            quantities,
            st.sampled_from(["MARKET", "LIMIT", "STOP_LOSS", "TAKE_PROFIT"]),
            st.decimals(min_value=D("-0.05"), max_value=D("0.05"), places=3),
            st.sampled_from(["GTC", "IOC", "FOK"]),
            prices,
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([D(0), D("0.2")]),
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_sequences_keep_every_invariant(app, orders, participation):
    rules = Rules(
        slippage=D("0.0005"),
        commission_rate=D("0.001"),
        participation=participation,
        max_position_size=D(1),
        max_daily_loss=D(1),
        max_drawdown=D(1),
    )
    symbol = f"P{uuid.uuid4().hex[:8].upper()}/USDT"
    with db.atomic():
        session = start_session(symbol, D(100_000), "PAPER")
    last = D(100)
    record_tick(symbol, last, volume=D(50))
    for side, quantity, kind, offset, tif, next_price in orders:
        level = (last * (1 + offset)).quantize(D("0.01"))
        place_order(
            OrderRequest(
                symbol=symbol,
                side=side,
                type=kind,
                quantity=quantity,
                price=level if kind == "LIMIT" else None,
                stop_price=level if kind in ("STOP_LOSS", "TAKE_PROFIT") else None,
                time_in_force=tif,
                session_id=session.id,
            )
        )
        process_pending(rules)
        last = next_price
        record_tick(symbol, last, volume=D(50))
        process_pending(rules)

    session = TradingSession.get_by_id(session.id)
    for order in Order.select().where(Order.session == session.id):
        assert order.executed_quantity <= order.quantity
        trades = list(Trade.select().where(Trade.order == order.id))
        assert sum((t.quantity for t in trades), D(0)) == order.executed_quantity
        if order.type == "LIMIT":
            for trade in trades:
                worse = (
                    trade.price > order.price if order.side == "BUY" else trade.price < order.price
                )
                assert not worse, (order.side, order.price, trade.price)
    fees = sum((t.commission for t in Trade.select().where(Trade.session == session.id)), D(0))
    positions = list(Position.select().where(Position.session == session.id))
    assert sum((p.fees for p in positions), D(0)) == fees
    equity, _, unrealized = equity_of(session, marks_for(session))
    realized = sum((p.realized_pnl for p in positions), D(0))
    # Equity is initial capital plus PnL net of fees, up to rounding to 18 places.
    assert abs(equity - (session.initial_capital + realized + unrealized)) < D("1e-9")
    assert len([p for p in positions if p.status == "OPEN"]) <= 1


def _run_book(rules, tag, orders, ticks, *, batched: bool) -> list:
    """Place ``orders`` on two symbols, let them rest, then work ``ticks`` on them: in one
    batch through the prefilter, or each tick through process_tick (the reference)."""
    from app.models import MarketPrice
    from app.trading.matching import claim_ticks, process_tick

    symbols = [f"{tag}{n}{uuid.uuid4().hex[:6].upper()}/USDT" for n in (1, 2)]
    sessions = {}
    for symbol in symbols:
        record_tick(symbol, D(100), volume=D(40))
        with db.atomic():
            sessions[symbol] = start_session(symbol, D(100_000), "PAPER")
    process_pending(rules)
    placed = []
    for which, side, quantity, kind, level in orders:
        symbol = symbols[which]
        placed.append(
            place_order(
                OrderRequest(
                    symbol=symbol, side=side, type=kind, quantity=quantity,
                    price=level if kind in ("LIMIT", "STOP_LOSS_LIMIT") else None,
                    stop_price=level if kind != "LIMIT" else None,
                    session_id=sessions[symbol].id,
                )
            )
        )  # fmt: skip
    process_pending(rules)  # accepted: they rest (the market is at 100)
    for which, price, volume in ticks:
        record_tick(symbols[which], price, volume=volume)
    if batched:
        process_pending(rules)
    else:
        with db.atomic():
            for tick in claim_ticks(1000):
                process_tick(tick, rules)
    outcome = [
        (o.status, o.executed_quantity, o.executed_quote_quantity, o.triggered_at is not None)
        for o in (Order.get_by_id(order.id) for order in placed)
    ]
    for symbol in symbols:
        session = TradingSession.get_by_id(sessions[symbol].id)
        positions = Position.select().where(Position.session == session.id).order_by(Position.id)
        outcome.append((session.cash, sorted((p.status, p.quantity) for p in positions)))
        outcome.append(MarketPrice.get_by_id(symbol).liquidity_left)
    return outcome


@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),
            sides,
            quantities,
            st.sampled_from(["LIMIT", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT"]),
            st.decimals(min_value=D("90"), max_value=D("110"), places=1),
        ),
        max_size=8,
    ),
    st.lists(
        st.tuples(
            st.sampled_from([0, 1]),
            st.decimals(min_value=D("85"), max_value=D("115"), places=1),
            st.sampled_from([None, D(30)]),
        ),
        min_size=1,
        max_size=15,
    ),
)
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_a_batch_of_ticks_fills_exactly_as_one_tick_at_a_time(app, orders, ticks):
    """The batch prefilter skips ticks that cross nothing; every fill, trigger, position and
    liquidity budget must be what working each tick on its own gives."""
    rules = Rules(
        slippage=D("0.0005"), commission_rate=D("0.001"), participation=D("0.5"),
        max_position_size=D(1), max_daily_loss=D(1), max_drawdown=D(1),
    )  # fmt: skip
    batched = _run_book(rules, "A", orders, ticks, batched=True)
    one_by_one = _run_book(rules, "B", orders, ticks, batched=False)
    assert batched == one_by_one
