"""Trading session lifecycle: start, pause, resume, stop, and the figures a stop records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from peewee import IntegrityError, fn

from app.db import db
from app.errors import Conflict, InvalidInput, InvalidTransition, NotFound
from app.events import publish_status
from app.models import (
    ACTIVE_SESSION_STATUSES,
    OPEN_ORDER_STATUSES,
    EquitySnapshot,
    Order,
    Position,
    Trade,
    TradingSession,
    utcnow,
)
from app.pagination import Listing, Page
from app.runtime_config import trading_rules
from app.statements import CompiledSelect
from app.trading.limits import LOSS_LIMIT_BREACHES
from app.trading.live import cancel_exposure_adding_orders, check_live_start
from app.trading.market_rules import market_rule
from app.trading.marking import close_session_positions, record_equity
from app.trading.stats import max_drawdown, sharpe_ratio
from app.trading.valuation import equity_of, marks_for
from app.vocabulary import PAPER_EXCHANGE, OrderStatus, PositionStatus, SessionStatus


@dataclass(frozen=True)
class SessionFilter:
    status: str | None = None
    symbol: str | None = None
    mode: str | None = None


def get_session(session_id: uuid.UUID, *, for_update: bool = False) -> TradingSession:
    """Return the session or raise 404 ``trading session not found``."""
    query = TradingSession.select().where(TradingSession.id == session_id)
    if for_update:
        query = query.for_update()
    session = query.first()
    if session is None:
        raise NotFound("trading session not found", session_id=session_id)
    return session


def list_sessions(filters: SessionFilter, page: Page) -> Listing:
    """Sessions, newest first, narrowed by status/symbol/mode."""
    query = TradingSession.select().order_by(TradingSession.started_at.desc())
    if filters.status:
        query = query.where(TradingSession.status == filters.status)
    if filters.symbol:
        query = query.where(TradingSession.symbol == filters.symbol)
    if filters.mode:
        query = query.where(TradingSession.mode == filters.mode)
    return Listing.of(query, page)


ACTIVE_SESSIONS = CompiledSelect(
    lambda: (
        TradingSession.select()
        .where(TradingSession.status.in_(ACTIVE_SESSION_STATUSES))
        .order_by(TradingSession.started_at.desc())
    ),
    {"symbol": lambda p: TradingSession.symbol == p, "mode": lambda p: TradingSession.mode == p},
)


def find_active_session(symbol: str, mode: str | None = None) -> TradingSession | None:
    """The RUNNING or PAUSED session for ``symbol`` (in ``mode`` when given)."""
    return only_active_session(
        symbol, ACTIVE_SESSIONS.instances({"symbol": symbol, "mode": mode or None}, limit=2)
    )


def only_active_session(symbol: str, candidates: list):
    """The one active session of ``symbol`` among ``candidates`` (None if there is none);
    400 asking for ``session_id`` when a PAPER and a LIVE one are both active."""
    if len(candidates) > 1:
        raise InvalidInput(
            "session_id is required",
            details=f"{symbol} has both a PAPER and a LIVE session active; say which one",
            field="session_id",
        )
    return candidates[0] if candidates else None


def start_session(
    symbol: str,
    initial_capital: Decimal | None,
    mode: str,
    *,
    live_exchange: str | None = None,
    market_exchange: str | None = None,
) -> TradingSession:
    """Open a RUNNING session; 409 if one is already active for the symbol and mode.

    ``initial_capital`` None: the configured ``trading.initial_capital``. A PAPER session on a
    ccxt feed (``market_exchange``) needs the exchange to list the symbol (400 naming it). A
    LIVE session trades on ``live_exchange`` (EXCHANGE_ID with its keys): it needs the
    configured ``trading_mode`` to be ``live`` (setting it back to ``paper`` is the kill switch)
    and the account to be readable (app/trading/live.py).
    """
    trading = trading_rules()["trading"]
    if initial_capital is None:
        initial_capital = Decimal(str(trading["initial_capital"]))
    exchange = PAPER_EXCHANGE
    if mode == "LIVE":
        if live_exchange is None:
            raise InvalidInput(
                "LIVE trading requires exchange credentials",
                details="set EXCHANGE_ID, EXCHANGE_API_KEY and EXCHANGE_API_SECRET (and "
                "EXCHANGE_API_PASSWORD where the exchange needs one), or start a PAPER session",
                field="mode",
            )
        if trading["mode"] != "live":
            raise InvalidInput(
                "LIVE trading is switched off",
                details="the configured trading_mode is paper; set it to live with "
                "PATCH /api/v1/config before a LIVE session can start",
                field="mode",
            )
        check_live_start(live_exchange, symbol, initial_capital)
        exchange = live_exchange
    elif market_exchange is not None:
        market_rule(market_exchange, symbol)
    existing = find_active_session(symbol, mode)
    if existing is not None:
        raise _already_active(existing)
    try:
        with db.atomic():
            return TradingSession.create(
                mode=mode,
                symbol=symbol,
                exchange=exchange,
                initial_capital=initial_capital,
                status=SessionStatus.RUNNING,
            )
    except IntegrityError:
        # Lost a race with a concurrent start: the partial unique index said no.
        existing = find_active_session(symbol, mode)
        if existing is None:
            raise
        raise _already_active(existing) from None


def _already_active(session: TradingSession) -> Conflict:
    return Conflict(
        "trading session already active",
        details=f"{session.symbol} already has a {session.status} {session.mode} session; "
        "stop it before starting another",
        session_id=session.id,
    )


def _transition(
    session_id: uuid.UUID, required: str, status: str, verb: str, reason: str | None, on_change=None
) -> TradingSession:
    with db.atomic():
        session = get_session(session_id, for_update=True)
        if session.status != required:
            raise InvalidTransition(
                f"trading session cannot be {verb}",
                details=f"session is {session.status}; only a {required} session can be {verb}",
                session_id=session.id,
            )
        if on_change is not None:
            on_change(session)
        session.status = status
        session.status_reason = reason
        session.save()
    return session


def pause_session(session_id: uuid.UUID, reason: str = "paused by user") -> TradingSession:
    """RUNNING → PAUSED: no new entries until resumed; orders and positions are kept.

    A LIVE session's working orders that would add exposure are cancelled (on the exchange, by
    the exchange process): an exchange order can fill at any time, and a fill is not undone.
    """
    with db.atomic():
        # The engine's lock order, as in stop_session: working orders first, then the session.
        list(
            Order.select(Order.id)
            .where(Order.session == session_id, Order.status.in_(OPEN_ORDER_STATUSES))
            .order_by(Order.placed_at, Order.id)
            .for_update()
        )
        return _transition(
            session_id,
            SessionStatus.RUNNING,
            SessionStatus.PAUSED,
            "paused",
            reason,
            on_change=cancel_exposure_adding_orders,
        )


def resume_session(session_id: uuid.UUID) -> TradingSession:
    """PAUSED → RUNNING.

    A session paused by a loss limit would breach it again at the next mark, so resuming resets
    the reference that limit is measured from to the current equity: the peak for max_drawdown,
    the day's start for max_daily_loss (announced as a ``risk_reference_reset`` system_status).
    A user's own pause resets nothing.
    """
    return _transition(
        session_id,
        SessionStatus.PAUSED,
        SessionStatus.RUNNING,
        "resumed",
        None,
        on_change=reset_breached_reference,
    )


def reset_breached_reference(session: TradingSession) -> None:
    reason = session.status_reason or ""
    if not reason.startswith(LOSS_LIMIT_BREACHES):
        return
    equity = marked_equity(session)
    if reason.startswith("max_drawdown"):
        before, session.peak_equity = session.peak_equity, equity
        reference = "peak_equity"
    else:
        before, session.day_start_equity = session.day_start_equity, equity
        reference = "day_start_equity"
    publish_status(
        "risk_reference_reset",
        f"Session resumed after a loss-limit pause: {reference} reset from {before:.2f} to the "
        f"current equity {equity:.2f}",
        session_id=str(session.id),
        symbol=session.symbol,
        reference=reference,
        previous=float(before),
        equity=float(equity),
    )


def marked_equity(session: TradingSession) -> Decimal:
    """Cash plus open positions at their latest prices."""
    equity, _, _ = equity_of(session, marks_for(session))
    return equity


def equity_curve_points(session_id: uuid.UUID) -> list[tuple]:
    """(sampled_at, equity) of the session, oldest first."""
    return list(
        EquitySnapshot.select(EquitySnapshot.sampled_at, EquitySnapshot.equity)
        .where(EquitySnapshot.session == session_id)
        .order_by(EquitySnapshot.sampled_at, EquitySnapshot.id)
        .tuples()
    )


def stop_session(session_id: uuid.UUID, final_capital: Decimal | None = None) -> TradingSession:
    """Stop a RUNNING/PAUSED session: cancel its working orders, close its positions at market,
    and record its figures. A LIVE session's positions are not sold: they stay open, marked at
    the exchange's price, and ``final_capital`` omitted counts them at that price.

    ``final_capital`` omitted → equity after closing (all cash by then). total_pnl = final -
    initial capital; total_trades counts fills; winning/losing trades count closed positions by
    the sign of their realized PnL (fees included); max_drawdown and sharpe_ratio come from the
    equity curve (see app/trading/stats.py).
    """
    with db.atomic():
        # The engine's lock order: working orders (oldest first), then the session, then its
        # positions. Taking the session first could deadlock with a fill in progress.
        working = list(
            Order.select()
            .where(Order.session == session_id, Order.status.in_(OPEN_ORDER_STATUSES))
            .order_by(Order.placed_at, Order.id)
            .for_update()
        )
        session = get_session(session_id, for_update=True)
        if session.status not in ACTIVE_SESSION_STATUSES:
            raise InvalidTransition(
                "trading session already stopped",
                details=f"session was stopped at {session.stopped_at.isoformat()}",
                session_id=session.id,
            )
        now = utcnow()
        for order in working:
            order.status = OrderStatus.CANCELED
            order.canceled_at = now
            order.save()
        if session.exchange == PAPER_EXCHANGE:
            close_session_positions(session)
        # A LIVE session's holdings stay in the exchange account: a kill switch cancels (the
        # exchange process sends the cancels) and never sells into the market by itself.
        session = get_session(session_id, for_update=True)
        equity = marked_equity(session)
        if final_capital is None:
            # Not clamped: a session that lost more than its capital reports it.
            final_capital = equity
        # The curve ends at the stop, so its figures (and a client recomputing them from
        # GET /sessions/{id}/equity) see the final equity.
        record_equity(session, marks_for(session), now)
        wins, losses = (
            Position.select(
                fn.COUNT(Position.id).filter(Position.realized_pnl > 0),
                fn.COUNT(Position.id).filter(Position.realized_pnl < 0),
            )
            .where(Position.session == session.id, Position.status == PositionStatus.CLOSED)
            .scalar(as_tuple=True)
        )
        points = equity_curve_points(session.id)
        session.total_trades = Trade.select().where(Trade.session == session.id).count()
        session.winning_trades = wins
        session.losing_trades = losses
        session.final_capital = final_capital
        session.total_pnl = final_capital - session.initial_capital
        # From the recorded curve only: neither a user-supplied final_capital nor a peak seen
        # between two samples moves it.
        session.max_drawdown = max_drawdown([value for _, value in points])
        step = float(trading_rules()["exchange"]["equity_sample_seconds"])
        session.sharpe_ratio = sharpe_ratio(points, step)
        session.status = SessionStatus.STOPPED
        session.status_reason = "stopped by user"
        session.stopped_at = now
        session.save()
    return session


@dataclass(frozen=True)
class SessionFigures:
    """A session with live figures: stored ones once stopped, computed from marks while active."""

    session: TradingSession
    equity: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    open_positions: int

    def __getattr__(self, name):
        return getattr(self.session, name)

    @property
    def total_pnl(self) -> Decimal:
        if self.session.is_active:
            return self.equity - self.session.initial_capital
        return self.session.total_pnl


def session_figures(session_id: uuid.UUID) -> SessionFigures:
    """The session with equity, PnL and open positions as of now."""
    session = get_session(session_id)
    equity, _, unrealized = equity_of(session, marks_for(session))
    if not session.is_active and session.final_capital is not None:
        equity = session.final_capital
    realized = (
        Position.select(fn.COALESCE(fn.SUM(Position.realized_pnl), 0))
        .where(Position.session == session.id)
        .scalar()
    )
    open_positions = Position.open_for(session.id).count()
    return SessionFigures(session, equity, Decimal(realized), unrealized, open_positions)


def equity_curve(
    session_id: uuid.UUID,
    page: Page,
    from_date: datetime | None = None,
    to_date: datetime | None = None,
) -> list[EquitySnapshot]:
    """Equity samples of a session, oldest first."""
    get_session(session_id)
    query = (
        EquitySnapshot.select()
        .where(EquitySnapshot.session == session_id)
        .order_by(EquitySnapshot.sampled_at, EquitySnapshot.id)
    )
    if from_date is not None:
        query = query.where(EquitySnapshot.sampled_at >= from_date)
    if to_date is not None:
        query = query.where(EquitySnapshot.sampled_at <= to_date)
    return list(page.apply(query))
