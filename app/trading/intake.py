"""Order intake: a new order's first look at the market, accepted in set-based batches.

Each batch's orders, sessions, positions and prices are loaded in a few queries, the fills are
computed on a :class:`Ledger`, and everything is written back with multi-row statements.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal

from app.db import CONNECTION_ERRORS, db, is_retryable
from app.events import publish_error
from app.models import Order, utcnow
from app.process_metrics import count_rejections
from app.trading.execution import execute, trigger
from app.trading.ledger import Ledger
from app.trading.rules import (
    Rules,
    limit_crossed,
    market_fill_price,
    marketable_limit_price,
    stop_triggered,
)
from app.vocabulary import TRIGGERED_TYPES, OrderStatus, OrderType, TimeInForce

log = logging.getLogger(__name__)

# Arrivals accepted per transaction. Measured (bench/engine_intake.py): 60 orders keep a batch
# transaction near 45 ms, and API calls may wait on the same rows that long.
INTAKE_BATCH = 60
# How long one pass keeps accepting arrivals before marking and ticks get their turn.
INTAKE_PASS_SECONDS = 0.25

# PAPER orders only: the exchange process sends LIVE ones (app/exchange/account.py).
ARRIVALS_SQL = """
SELECT * FROM orders
 WHERE accepted_at IS NULL AND status = 'NEW' AND exchange = 'PAPER'
 ORDER BY placed_at, id
 LIMIT %s
 FOR UPDATE
"""


def accept_new_orders(rules: Rules, batch: int = INTAKE_BATCH) -> int:
    """First look at each new order, a batch per transaction: fill, rest, expire or reject.

    A batch that fails is redone order by order; an order that still fails on its own is
    REJECTED with the error, so no order can block the ones behind it.
    """
    accepted = 0
    deadline = time.monotonic() + INTAKE_PASS_SECONDS
    while time.monotonic() < deadline:
        try:
            with db.atomic():
                taken = accept_batch(list(Order.raw(ARRIVALS_SQL, batch)), rules)
        except CONNECTION_ERRORS as error:
            if not is_retryable(error):
                raise
            # A deadlock rolled the batch back whole: nothing is lost, the next pass redoes it.
            log.warning("order intake batch rolled back (%s); retrying next pass", error)
            break
        except Exception:
            log.exception("order intake batch failed; accepting its orders one by one")
            taken = accept_one_by_one(rules, batch)
        accepted += taken
        if taken < batch:
            break
    return accepted


def accept_batch(orders: list[Order], rules: Rules) -> int:
    if not orders:
        return 0
    ledger = Ledger(rules)
    ledger.lock_sessions(order.session_id for order in orders)
    ledger.load_prices(order.symbol for order in orders)
    now = utcnow()
    for order in orders:
        order.accepted_at = now
        ledger.touch(order)
        on_arrival(order, ledger)
    ledger.flush()
    return len(orders)


def accept_one_by_one(rules: Rules, batch: int) -> int:
    ids = [row.id for row in Order.raw(ARRIVALS_SQL.replace("FOR UPDATE", ""), batch)]
    for order_id in ids:
        try:
            with db.atomic():
                orders = list(Order.select().where(Order.id == order_id).for_update())
                accept_batch([o for o in orders if o.accepted_at is None], rules)
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            log.exception("order %s could not be processed; rejecting it", order_id)
            reason = f"the engine could not process this order: {type(exc).__name__}: {exc}"
            count_rejections(["engine_error"])
            with db.atomic():
                rejected = {
                    Order.status: OrderStatus.REJECTED,
                    Order.accepted_at: utcnow(),
                    Order.error_message: reason,
                    Order.updated_at: utcnow(),
                }
                still_new = (Order.id == order_id) & (Order.status == OrderStatus.NEW)
                Order.update(rejected).where(still_new).execute()
                publish_error("Order rejected by the engine", reason, "high", order_id=order_id)
    return len(ids)


def on_arrival(order: Order, ledger: Ledger) -> None:
    """A new order's first look at the market: fill now, rest, trigger or expire.

    It draws on what is left of the liquidity of its symbol's latest tick.
    """
    filled = arrive(order, ledger, ledger.liquidity.left(order.symbol))
    if filled:
        ledger.liquidity.take(order.symbol, filled)


def arrive(order: Order, ledger: Ledger, available: Decimal | None) -> Decimal:
    last = ledger.price(order.symbol)
    ledger.market_time = last.price_time if last is not None else None
    if order.type in TRIGGERED_TYPES:
        if last is not None and stop_triggered(
            order.type, order.side, order.stop_price, last.price
        ):
            return trigger(order, last.price, available, ledger, liquidity_is_cap=True)
        return Decimal(0)
    if last is None:
        if order.time_in_force != TimeInForce.GTC:
            ledger.expire(order, "no market price yet for an immediate order")
        return Decimal(0)
    if order.type == OrderType.MARKET:
        age = (utcnow() - last.updated_at).total_seconds()
        if age > ledger.rules.max_price_age_seconds:
            # A stale price is no market: GTC waits for the next tick, IOC/FOK give up.
            if order.time_in_force != TimeInForce.GTC:
                ledger.expire(
                    order,
                    f"the latest price is {age:.0f}s old (max_price_age_seconds "
                    f"{ledger.rules.max_price_age_seconds:g}); no fresh market to fill at",
                )
            return Decimal(0)
        price = market_fill_price(order.side, last.price, ledger.rules)
        return execute(order, price, available, ledger, liquidity_is_cap=True, market=last.price)
    if limit_crossed(order.side, order.price, last.price):
        price = marketable_limit_price(order.side, order.price, last.price, ledger.rules)
        return execute(order, price, available, ledger, liquidity_is_cap=True, market=last.price)
    if order.time_in_force != TimeInForce.GTC:
        ledger.expire(order, f"limit {order.price} not marketable at {last.price}")
    return Decimal(0)
