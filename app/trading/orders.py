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
from app.trading.sessions import find_active_session, get_session
from app.trading.valuation import prices_of
from app.vocabulary import PAPER_EXCHANGE


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


def order_view(order_id: uuid.UUID) -> dict:
    """The order as the API shows it (a row dict), or 404 ``order not found``."""
    row = ORDER_LIST.first({"id": order_id})
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


def ensure_intake_keeps_up(max_backlog_seconds: float) -> None:
    """Back-pressure: refuse new orders (503) while the engine is behind.

    When the oldest order the engine has not looked at yet is older than
    ``max_backlog_seconds``, an order is refused at once rather than accepted and left waiting
    for minutes; the client retries after ``Retry-After``.
    """
    row = db.execute_sql(OLDEST_UNPROCESSED_SQL).fetchone()
    if row is None or row[0] is None:
        return
    age = float(row[0])
    if age > max_backlog_seconds:
        raise Unavailable(
            "order intake is behind",
            details=f"the oldest unprocessed order is {age:.1f}s old (limit "
            f"{max_backlog_seconds:g}s); the engine is overloaded or down; retry later",
            retry_after=max(1, round(age - max_backlog_seconds)),
        )


def check_market_rules(request: OrderRequest, exchange: str, priced_on: str) -> None:
    """400 naming the rule when the order breaks one of the exchange's market (lot size,
    quantity bounds, tick size, minimum notional at its price or the latest one on
    ``priced_on``: the session's exchange, PAPER for the market feed)."""
    rule = market_rule(exchange, request.symbol)
    latest = prices_of([request.symbol], priced_on).get(request.symbol)
    prices = {"price": request.price, "stop_price": request.stop_price}
    check_order(rule, request.quantity, prices, latest.price if latest else None)


def place_order(request: OrderRequest, market_exchange: str | None = None) -> Order:
    """Record a NEW order for the engine (PAPER) or the exchange process (LIVE) to work.

    The session is the one given (it may trade any symbol) or the symbol's active session. A
    PAUSED session takes orders so positions can still be reduced; the engine rejects entries
    on it. A STOPPED session takes none. The order must respect the market's rules of a LIVE
    session's exchange, or of ``market_exchange`` (a ccxt feed) for a PAPER one.
    """
    with db.atomic():
        if request.session_id is not None:
            session = get_session(request.session_id, for_update=True)
        else:
            session = find_active_session(request.symbol)
            if session is None:
                raise InvalidInput(
                    "no active trading session",
                    details=f"start one for {request.symbol} with POST /api/v1/trade/start, "
                    "or pass session_id",
                    field="session_id",
                )
        if not session.is_active:
            raise InvalidTransition(
                "trading session is stopped",
                details=f"session {session.id} was stopped; start a new one with "
                "POST /api/v1/trade/start",
                session_id=session.id,
            )
        if session.exchange != PAPER_EXCHANGE:
            check_live_order(request, session.exchange)
            market_exchange = session.exchange
        if market_exchange is not None:
            check_market_rules(request, market_exchange, session.exchange)
        return statements.create(
            Order,
            session=session.id,
            symbol=request.symbol,
            exchange=session.exchange,
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
