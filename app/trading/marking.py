"""Periodic marking: open positions at the latest prices, loss limits, equity samples; and the
closing of a stopping session's positions."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from peewee import fn

from app.db import CONNECTION_ERRORS, db
from app.events import publish_error
from app.models import (
    ACTIVE_SESSION_STATUSES,
    EquitySnapshot,
    Position,
    TradingSession,
    utcnow,
)
from app.trading.ledger import Ledger
from app.trading.limits import breach_event, update_loss_limits
from app.trading.rules import Rules, money
from app.trading.valuation import book_of, equity_of, market_time, marks_for

log = logging.getLogger(__name__)
# Sessions whose marking failed and was reported: reported once, not every second.
_reported_failures: set = set()


def record_equity(
    session: TradingSession, marks: dict[str, Decimal], now: datetime
) -> EquitySnapshot:
    """An equity sample at the market time of its marks (``now`` when there is no price)."""
    equity, value, unrealized = equity_of(session, marks)
    sampled_at = market_time([*marks, session.symbol], session.exchange) or now
    realized = (
        Position.select(fn.COALESCE(fn.SUM(Position.realized_pnl), 0))
        .where(Position.session == session.id)
        .scalar()
    )
    return EquitySnapshot.create(
        session=session.id,
        sampled_at=sampled_at,
        equity=equity,
        cash=session.cash,
        position_value=value,
        realized_pnl=money(Decimal(realized)),
        unrealized_pnl=unrealized,
    )


def mark_to_market(rules: Rules, sample: bool) -> int:
    """Mark every open position, enforce loss limits; with ``sample``, record equity points."""
    marked = 0
    now = utcnow()
    sessions = TradingSession.select(TradingSession.id).where(
        TradingSession.status.in_(ACTIVE_SESSION_STATUSES)
    )
    for (session_id,) in sessions.tuples():
        try:
            marked += mark_session(session_id, rules, sample, now)
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            # One session whose figures cannot be stored must not stop the marking of others.
            log.exception("marking session %s failed", session_id)
            if session_id not in _reported_failures:
                _reported_failures.add(session_id)
                publish_error(
                    "Session could not be marked",
                    f"{type(exc).__name__}: {exc}",
                    "high",
                    session_id=str(session_id),
                )
    return marked


def mark_session(session_id, rules: Rules, sample: bool, now: datetime) -> int:
    """Mark one session's open positions, enforce its loss limits, maybe sample its equity."""
    marked = 0
    with db.atomic():
        session = (
            TradingSession.select().where(TradingSession.id == session_id).for_update().first()
        )
        if session is None or session.status not in ACTIVE_SESSION_STATUSES:
            return 0
        marks = marks_for(session)
        for position in Position.open_for(session.id).for_update():
            mark = marks.get(position.symbol)
            if mark is None or mark == position.mark_price:
                continue
            position.mark_price = mark
            position.unrealized_pnl = money(book_of(position).unrealized(mark))
            position.save()
            marked += 1
        equity, _, _ = equity_of(session, marks)
        breach = update_loss_limits(session, equity, rules, now.date())
        session.save()
        if breach:
            error, details, severity, metadata = breach_event(session, breach)
            publish_error(error, details, severity, **metadata)
        if sample:
            record_equity(session, marks, now)
    _reported_failures.discard(session_id)
    return marked


def close_session_positions(session: TradingSession, rules: Rules | None = None) -> None:
    """Close everything a stopping session holds at the latest price (entry price if none)."""
    ledger = Ledger(rules or Rules.current())
    ledger.lock_sessions([session.id])
    book = ledger.session(session.id)
    ledger.market_time = market_time([*book.positions, session.symbol])
    for position in list(book.positions.values()):
        last = ledger.price(position.symbol)
        price = last.price if last is not None else position.entry_price
        ledger.close_at_market(position, price, source="session_stop", reason="session stopped")
    ledger.flush()
