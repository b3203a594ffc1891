"""The limits a fill that adds exposure must respect; reducing a position is never refused."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from app.models import TradingSession
from app.trading.portfolio import Book, FillEffect, exposure_increase
from app.trading.rules import Rejected, Rules
from app.vocabulary import SessionStatus, Side


def check_entry(
    session: TradingSession,
    side: str,
    effect: FillEffect,
    price: Decimal,
    equity: Decimal,
    other_positions: int,
    rules: Rules,
) -> None:
    """Raise :class:`Rejected`, naming the limit, when the entry part of a fill breaks one."""
    if session.status == SessionStatus.PAUSED:
        raise Rejected(
            f"session paused ({session.status_reason}): new entries are refused; "
            "resume with POST /api/v1/trade/resume",
            reason="session_paused",
        )
    if session.status != SessionStatus.RUNNING:
        raise Rejected(f"session is {session.status}", reason="session_inactive")
    if side == Side.BUY and session.cash + effect.cash_delta < 0:
        need = -effect.cash_delta
        raise Rejected(
            f"insufficient cash: the fill needs {need:.8f}, cash is {session.cash:.8f}",
            reason="insufficient_cash",
        )
    notional = abs(effect.open.quantity) * price
    if notional > rules.max_position_size * equity:
        raise Rejected(
            f"max_position_size: the position would be {notional:.2f} "
            f"({notional / equity:.1%} of equity {equity:.2f}); the limit is "
            f"{rules.max_position_size:.1%}"
            if equity > 0
            else "max_position_size: equity is not positive",
            reason="max_position_size",
        )
    if effect.opened_new and other_positions + 1 > rules.max_positions:
        raise Rejected(
            f"max_positions: the session already holds {other_positions} open positions; "
            f"the limit is {rules.max_positions}",
            reason="max_positions",
        )


def check_adding_fill(
    book,
    order,
    before: Book,
    effect: FillEffect,
    quantity: Decimal,
    price: Decimal,
    equity: Callable[[], Decimal],
    rules: Rules,
) -> None:
    """Raise :class:`Rejected`, naming the limit, when filling ``quantity`` of ``order`` at
    ``price`` (``effect`` on the position ``before``) adds exposure beyond one; reducing is
    always allowed. ``book`` is the locked session (its row, its open positions by symbol);
    ``equity()`` is asked only for a fill that adds exposure."""
    if exposure_increase(before, order.side, quantity) <= 0:
        return
    others = sum(1 for symbol in book.positions if symbol != order.symbol)
    check_entry(book.row, order.side, effect, price, equity(), others, rules)
