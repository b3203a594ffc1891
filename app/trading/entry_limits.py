"""The limits a fill that adds exposure must respect; reducing a position is never refused."""

from __future__ import annotations

from decimal import Decimal

from app.models import TradingSession
from app.trading.portfolio import FillEffect
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
