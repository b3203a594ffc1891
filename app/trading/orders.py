"""Manual and agent order entry, lookup and cancellation (matching lives in the engine)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from decimal import Decimal

from app import statements
from app.db import db
from app.errors import InvalidInput, InvalidTransition, NotFound, Unavailable
from app.models import Order, utcnow
from app.pagination import Listing, Page
from app.statements import CompiledSelect, text_uuids
from app.trading.live import check_live_order
from app.trading.market_rules import check_order, market_rule
from app.trading.sessions import get_session, only_active_session
from app.trading.valuation import prices_of
from app.vocabulary import ACTIVE_SESSION_STATUSES, PAPER_EXCHANGE


@dataclass(frozen=True)
class OrderRequest:
    symbol: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = "GTC"
    session_id: uuid.UUID | None = None
    source: str = "manual"


@dataclass(frozen=True)
class OrderFilter:
    session_id: uuid.UUID | None = None
    symbol: str | None = None
    status: str | None = None
    side: str | None = None


# What the API shows of an order: every column but the engine's and the exchange process's
# bookkeeping.
BOOKKEEPING = ("accepted_at", "triggered_at", "sent_at", "settled_at")
ORDER_COLUMNS = text_uuids(*(f for f in Order._meta.sorted_fields if f.name not in BOOKKEEPING))
ORDER_LIST = CompiledSelect(
    lambda: Order.select(*ORDER_COLUMNS).order_by(Order.placed_at.desc(), Order.id),
    {
        "id": lambda p: Order.id == p,
        "session_id": lambda p: Order.session == p,
        "symbol": lambda p: Order.symbol == p,
        "status": lambda p: Order.status == p,
        "side": lambda p: Order.side == p,
    },
)


# One order by its key: the list's columns without the list's ordering (a sort node on one
# row was a third of PostgreSQL's planning and execution of the lookup).
ORDER_DETAIL = CompiledSelect(lambda: Order.select(*ORDER_COLUMNS), {"id": lambda p: Order.id == p})


def order_view(order_id: uuid.UUID) -> dict:
    """The order as the API shows it (a row dict), or 404 ``order not found``."""
    row = ORDER_DETAIL.first({"id": order_id})
    if row is None:
        raise NotFound("order not found", order_id=order_id)
    return row


def get_order(order_id: uuid.UUID, *, for_update: bool = False) -> Order:
    """Return the order or raise 404 ``order not found`` with ``order_id``."""
    query = Order.select().where(Order.id == order_id)
    if for_update:
        query = query.for_update()
    order = query.first()
    if order is None:
        raise NotFound("order not found", order_id=order_id)
    return order


def list_orders(filters: OrderFilter, page: Page) -> Listing:
    """Orders (row dicts), newest first; every filter combines with the others."""
    return Listing.of_compiled(ORDER_LIST, asdict(filters), page)


OLDEST_UNPROCESSED_SQL = """
SELECT EXTRACT(EPOCH FROM now() - placed_at) FROM orders
 WHERE accepted_at IS NULL AND status = 'NEW' AND exchange = 'PAPER'
 ORDER BY placed_at, id
 LIMIT 1
"""


# The symbol's active sessions (two at most: more is ambiguous) and the intake's back-pressure
# age, in one round trip. It is the first statement of an order's transaction, so the BEGIN
# rides along too (see app.db): with the audit row riding the COMMIT, an order is three round
# trips.
ORDER_SESSION_SQL = f"""
SELECT ({OLDEST_UNPROCESSED_SQL.strip()}) AS backlog_age, s.id, s.status, s.exchange
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (
       SELECT id, status, exchange FROM trading_sessions
        WHERE symbol = %s AND status = ANY(%s)
        ORDER BY started_at DESC
        LIMIT 2) AS s ON true
"""
ACTIVE_STATUSES = [str(status) for status in ACTIVE_SESSION_STATUSES]


def ensure_intake_keeps_up(max_backlog_seconds: float) -> None:
    """Back-pressure: refuse new orders (503) while the engine is behind.

    When the oldest order the engine has not looked at yet is older than
    ``max_backlog_seconds``, an order is refused at once rather than accepted and left waiting
    for minutes; the client retries after ``Retry-After``.
    """
    row = db.execute_sql(OLDEST_UNPROCESSED_SQL).fetchone()
    _refuse_if_behind(row[0] if row else None, max_backlog_seconds)


def _refuse_if_behind(backlog_age, max_backlog_seconds: float) -> None:
    if backlog_age is None:
        return
    age = float(backlog_age)
    if age > max_backlog_seconds:
        raise Unavailable(
            "order intake is behind",
            details=f"the oldest unprocessed order is {age:.1f}s old (limit "
            f"{max_backlog_seconds:g}s); the engine is overloaded or down; retry later",
            retry_after=max(1, round(age - max_backlog_seconds)),
        )


def _session_for(request: OrderRequest, max_backlog_seconds: float | None) -> tuple:
    """(id, status, exchange) of the session ``request`` goes to, after the back-pressure
    check when ``max_backlog_seconds`` is given; 400 when the symbol has no active session."""
    if request.session_id is not None:
        if max_backlog_seconds is not None:
            ensure_intake_keeps_up(max_backlog_seconds)
        session = get_session(request.session_id, for_update=True)
        return session.id, session.status, session.exchange
    rows = db.execute_prepared(ORDER_SESSION_SQL, (request.symbol, ACTIVE_STATUSES)).fetchall()
    if max_backlog_seconds is not None:
        _refuse_if_behind(rows[0][0], max_backlog_seconds)
    found = only_active_session(request.symbol, [row[1:] for row in rows if row[1] is not None])
    if found is None:
        raise InvalidInput(
            "no active trading session",
            details=f"start one for {request.symbol} with POST /api/v1/trade/start, "
            "or pass session_id",
            field="session_id",
        )
    return found


def check_market_rules(request: OrderRequest, exchange: str, priced_on: str) -> None:
    """400 naming the rule when the order breaks one of the exchange's market (lot size,
    quantity bounds, tick size, minimum notional at its price or the latest one on
    ``priced_on``: the session's exchange, PAPER for the market feed)."""
    rule = market_rule(exchange, request.symbol)
    latest = prices_of([request.symbol], priced_on).get(request.symbol)
    prices = {"price": request.price, "stop_price": request.stop_price}
    check_order(rule, request.quantity, prices, latest.price if latest else None)


def place_order(
    request: OrderRequest,
    market_exchange: str | None = None,
    *,
    max_backlog_seconds: float | None = None,
) -> Order:
    """Record a NEW order for the engine (PAPER) or the exchange process (LIVE) to work.

    The session is the one given (it may trade any symbol) or the symbol's active session. A
    PAUSED session takes orders so positions can still be reduced; the engine rejects entries
    on it. A STOPPED session takes none. The order must respect the market's rules of a LIVE
    session's exchange, or of ``market_exchange`` (a ccxt feed) for a PAPER one. With
    ``max_backlog_seconds``, an order is refused (503) while the engine's intake is further
    behind than that (:func:`ensure_intake_keeps_up`), before anything is written.
    """
    with db.atomic():
        session_id, status, exchange = _session_for(request, max_backlog_seconds)
        if status not in ACTIVE_SESSION_STATUSES:
            raise InvalidTransition(
                "trading session is stopped",
                details=f"session {session_id} was stopped; start a new one with "
                "POST /api/v1/trade/start",
                session_id=session_id,
            )
        if exchange != PAPER_EXCHANGE:
            check_live_order(request, exchange)
            market_exchange = exchange
        if market_exchange is not None:
            check_market_rules(request, market_exchange, exchange)
        return statements.create(
            Order,
            session=session_id,
            symbol=request.symbol,
            exchange=exchange,
            side=request.side,
            type=request.type,
            status="NEW",
            price=request.price,
            stop_price=request.stop_price,
            quantity=request.quantity,
            time_in_force=request.time_in_force,
            source=request.source,
        )


def cancel_order(order_id: uuid.UUID) -> Order:
    """Cancel a NEW or PARTIALLY_FILLED order; what was already filled stays filled."""
    with db.atomic():
        order = get_order(order_id, for_update=True)
        if not order.is_open:
            raise InvalidTransition(
                "order cannot be cancelled",
                details=f"order is already {order.status}",
                order_id=order.id,
            )
        order.status = "CANCELED"
        order.canceled_at = utcnow()
        order.save()
    return order
