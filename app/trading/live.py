"""LIVE trading's rules on the database side: what the web checks before a LIVE session starts
or a LIVE order is taken, and the cancels of a pause and of the kill switch.

Nothing here talks to the exchange: the exchange process (app/exchange/account.py) reads the
account into ``exchange_accounts`` and sends the orders and cancels recorded here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.db import db
from app.errors import InvalidInput, Unavailable
from app.events import publish_status
from app.models import Order, Position, TradingSession, utcnow
from app.trading.market_rules import market_rule
from app.vocabulary import (
    ACTIVE_SESSION_STATUSES,
    OPEN_ORDER_STATUSES,
    PAPER_EXCHANGE,
    OrderStatus,
    OrderType,
    PositionSide,
    SessionStatus,
    Side,
)

# The exchange process reads the account every ACCOUNT_CHECK_SECONDS (app/exchange/account.py);
# a reading older than this means it is not running or cannot reach the exchange.
ACCOUNT_STALE_SECONDS = 30.0
# Beyond this the exchange refuses signed requests (Binance's default receive window is 5 s).
MAX_CLOCK_OFFSET_MS = 5_000
# What the exchange process routes: the exchange's own order types, no emulated triggers.
LIVE_ORDER_TYPES = (OrderType.MARKET, OrderType.LIMIT)

ACCOUNT_SQL = """
SELECT checked_at, clock_offset_ms, balances, markets, problem,
       EXTRACT(EPOCH FROM now() - checked_at)
  FROM exchange_accounts WHERE exchange = %s
"""


@dataclass(frozen=True)
class AccountHealth:
    """The exchange account as the exchange process last read it."""

    exchange: str
    checked_at: datetime
    clock_offset_ms: int | None
    balances: dict
    markets: int
    problem: str | None
    age_seconds: float

    def free(self, asset: str) -> Decimal:
        return Decimal(str((self.balances.get(asset) or {}).get("free") or 0))

    def trouble(self) -> str | None:
        """Why LIVE orders cannot go to this account now, or None."""
        if self.age_seconds > ACCOUNT_STALE_SECONDS:
            return (
                f"the account was last read {self.age_seconds:.0f}s ago; is the exchange process "
                "(python -m app exchange) running?"
            )
        if self.problem:
            return self.problem
        if self.clock_offset_ms is None or abs(self.clock_offset_ms) > MAX_CLOCK_OFFSET_MS:
            return f"the exchange's clock is {self.clock_offset_ms} ms off this machine's"
        if not self.markets:
            return "the exchange's markets are not loaded"
        return None


def account_health(exchange: str) -> AccountHealth | None:
    """The latest reading of the account on ``exchange`` (None before the first one)."""
    row = db.execute_sql(ACCOUNT_SQL, (exchange,)).fetchone()
    if row is None:
        return None
    checked_at, offset, balances, markets, problem, age = row
    return AccountHealth(exchange, checked_at, offset, balances or {}, markets, problem,
                         float(age))  # fmt: skip


def account_status(exchange: str, sandbox: bool) -> dict:
    """What GET /status shows of the LIVE account: whether orders can go to it now, and why
    not (its balances stay out of it)."""
    health = account_health(exchange)
    trouble = "the exchange process has not read the account yet" if health is None else (
        health.trouble())  # fmt: skip
    return {
        "exchange": exchange,
        "sandbox": sandbox,
        "state": "ready" if trouble is None else "unavailable",
        "problem": trouble,
        "checked_at": health.checked_at if health else None,
        "clock_offset_ms": health.clock_offset_ms if health else None,
        "markets": health.markets if health else 0,
    }


def check_live_start(exchange: str, symbol: str, initial_capital: Decimal) -> None:
    """503 while the account's clock, balance or markets cannot be read; 400 when the exchange
    does not list the symbol or the account holds less of its quote currency than the capital."""
    health = account_health(exchange)
    trouble = (
        "the exchange process has not read the account yet" if health is None else health.trouble()
    )
    if trouble is not None:
        raise Unavailable(
            f"the {exchange} account cannot be used for LIVE trading now",
            details=trouble,
            retry_after=5,
        )
    market_rule(exchange, symbol)
    quote = symbol.split("/")[1]
    free = health.free(quote)
    if free < initial_capital:
        raise InvalidInput(
            "initial_capital exceeds the account's balance",
            details=f"the {exchange} account holds {free} {quote} free; a LIVE session cannot "
            f"start with {initial_capital} {quote}",
            field="initial_capital",
        )


def check_live_order(request, exchange: str) -> None:
    """400 for an order a LIVE session cannot send to ``exchange``."""
    if request.type not in LIVE_ORDER_TYPES:
        raise InvalidInput(
            "order type not available in LIVE mode",
            details=f"{exchange} is sent MARKET and LIMIT orders; a {request.type} order is "
            "only emulated on PAPER sessions (positions' stop_loss/take_profit still work)",
            field="type",
        )


def adds_exposure(order: Order, position: Position | None) -> bool:
    """Whether filling what is left of ``order`` could grow the session's exposure."""
    if position is None:
        return True
    reducing = Side.SELL if position.side == PositionSide.LONG else Side.BUY
    remaining = order.quantity - order.executed_quantity
    return order.side != reducing or remaining > position.quantity


def cancel_exposure_adding_orders(session: TradingSession) -> int:
    """A pausing LIVE session: cancel its working orders that would add exposure (the exchange
    process cancels them on the exchange). Orders that only reduce a position stay."""
    if session.exchange == PAPER_EXCHANGE:
        return 0
    positions = {p.symbol: p for p in Position.open_for(session.id)}
    working = (
        Order.select()
        .where(Order.session == session.id, Order.status.in_(OPEN_ORDER_STATUSES))
        .for_update()
    )
    adding = [o for o in working if adds_exposure(o, positions.get(o.symbol))]
    return _cancel(adding, "cancelled: the session was paused and this order adds exposure")


def kill_switch(reason: str) -> int:
    """Cancel every working LIVE order and pause every running LIVE session; how many orders.

    The exchange process sends the cancels and refuses to send anything while ``trading_mode``
    is not ``live``.
    """
    with db.atomic():
        # The engine's lock order: orders first, then sessions.
        working = list(
            Order.select()
            .where(Order.exchange != PAPER_EXCHANGE, Order.status.in_(OPEN_ORDER_STATUSES))
            .order_by(Order.placed_at, Order.id)
            .for_update()
        )
        cancelled = _cancel(working, f"cancelled by the kill switch: {reason}")
        running = (
            TradingSession.select()
            .where(
                TradingSession.exchange != PAPER_EXCHANGE,
                TradingSession.status == SessionStatus.RUNNING,
            )
            .order_by(TradingSession.id)
            .for_update()
        )
        paused = []
        for session in running:
            session.status = SessionStatus.PAUSED
            session.status_reason = f"kill switch: {reason}"
            session.save()
            paused.append(str(session.id))
        if cancelled or paused:
            publish_status(
                "kill_switch",
                f"LIVE trading stopped: {reason}",
                cancelled_orders=cancelled,
                paused_sessions=paused,
            )
    return cancelled


def _cancel(orders: list[Order], reason: str) -> int:
    now = utcnow()
    for order in orders:
        order.status = OrderStatus.CANCELED
        order.canceled_at = now
        order.error_message = reason
        order.save()
    return len(orders)


def live_sessions_symbols(exchange: str) -> list[str]:
    """Symbols whose exchange price LIVE sessions need: their own, and what they hold."""
    active = TradingSession.select(TradingSession.symbol).where(
        TradingSession.exchange == exchange,
        TradingSession.status.in_(ACTIVE_SESSION_STATUSES),
    )
    held = Position.select(Position.symbol).where(
        Position.exchange == exchange, Position.status == "OPEN"
    )
    working = Order.select(Order.symbol).where(
        Order.exchange == exchange, Order.settled_at.is_null()
    )
    return sorted({s for q in (active, held, working) for (s,) in q.tuples()})
