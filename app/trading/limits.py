"""Loss limits: the peak and day-start equity a session is measured from, and the pause."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from app.models import TradingSession
from app.trading.rules import Rules, money
from app.vocabulary import SessionStatus

# How a loss-limit pause's status_reason starts; a resume resets the reference it measured from.
LOSS_LIMIT_BREACHES = ("max_drawdown breached", "max_daily_loss breached")


def update_loss_limits(
    session: TradingSession, equity: Decimal, rules: Rules, today: date
) -> str | None:
    """Track peak and day-start equity and max drawdown on the row (not saved here).

    A breach of max_drawdown or max_daily_loss pauses a RUNNING session; the breach is returned
    so the caller can publish it once, in its own transaction.
    """
    if session.day_start_date != today:
        session.day_start_date = today
        session.day_start_equity = equity
    session.peak_equity = max(session.peak_equity, equity)
    drawdown = (
        (session.peak_equity - equity) / session.peak_equity
        if session.peak_equity > 0
        else Decimal(0)
    )
    session.max_drawdown = money(max(session.max_drawdown, drawdown))
    daily_loss = (
        (session.day_start_equity - equity) / session.day_start_equity
        if session.day_start_equity > 0
        else Decimal(0)
    )
    breach = None
    if drawdown >= rules.max_drawdown:
        breach = (
            f"max_drawdown breached: {drawdown:.2%} below the peak (limit {rules.max_drawdown:.2%})"
        )
    elif daily_loss >= rules.max_daily_loss:
        limit = rules.max_daily_loss
        breach = f"max_daily_loss breached: {daily_loss:.2%} lost today (limit {limit:.2%})"
    if breach and session.status == SessionStatus.RUNNING:
        session.status = SessionStatus.PAUSED
        session.status_reason = breach
        return breach
    return None


def breach_event(session: TradingSession, breach: str) -> tuple[str, str, str, dict]:
    """The error event (publish_error arguments) that announces a loss-limit pause."""
    return (
        "Risk limit breached",
        f"{breach}; session paused, new entries refused until resumed",
        "critical",
        {"session_id": str(session.id), "symbol": session.symbol},
    )
