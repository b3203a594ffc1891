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
        session = start_session(symbol, D(100_000), "PAPER", live_credentials=False)
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
