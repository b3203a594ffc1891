"""Executing one order at a price: liquidity caps, IOC/FOK, triggers, reduce-only remainders.

Shared by the tick path (app/trading/matching.py) and the arrival path (app/trading/intake.py),
so each rule is stated once.
"""

from __future__ import annotations

from decimal import Decimal

from app.models import Order, utcnow
from app.trading.ledger import Ledger
from app.trading.rules import (
    Rejected,
    limit_crossed,
    market_fill_price,
    marketable_limit_price,
    money,
)
from app.vocabulary import MARKET_TRIGGERED_TYPES, OrderStatus, PositionSide, Side, TimeInForce


def trigger(
    order: Order,
    price: Decimal,
    available: Decimal | None,
    ledger: Ledger,
    *,
    liquidity_is_cap: bool = False,
) -> Decimal:
    """A stop or take-profit fired: market types fill now, *_LIMIT types rest at their limit."""
    order.triggered_at = utcnow()
    ledger.touch(order)
    cap = liquidity_is_cap
    if order.type in MARKET_TRIGGERED_TYPES:
        fill_price = market_fill_price(order.side, price, ledger.rules)
        return execute(order, fill_price, available, ledger, liquidity_is_cap=cap, market=price)
    if limit_crossed(order.side, order.price, price):
        fill_price = marketable_limit_price(order.side, order.price, price, ledger.rules)
        return execute(order, fill_price, available, ledger, liquidity_is_cap=cap, market=price)
    if order.time_in_force != TimeInForce.GTC:
        ledger.expire(order, f"triggered at {price}; limit {order.price} not marketable")
    return Decimal(0)


def reduce_only(
    order: Order,
    price: Decimal,
    quantity: Decimal,
    ledger: Ledger,
    rejection: Rejected,
    market: Decimal | None,
) -> Decimal:
    """A refused fill still takes the part that reduces the position: reducing is always
    allowed (a paused session's flip, a flip past max_position_size). The rest is rejected."""
    position = ledger.session(order.session_id).positions.get(order.symbol)
    reducing = Decimal(0)
    if position is not None and (position.side == PositionSide.LONG) != (order.side == Side.BUY):
        reducing = min(quantity, position.quantity)
    if reducing > 0:
        try:
            ledger.fill(order, price, reducing, market=market)
        except Rejected:
            reducing = Decimal(0)
    reason = str(rejection)
    if reducing > 0:
        reason = (
            f"{reason}; the part that reduces the position ({reducing.normalize():f}) was filled"
        )
    ledger.reject(order, reason, rejection.reason)
    return reducing


def execute(
    order: Order,
    price: Decimal,
    volume: Decimal | None,
    ledger: Ledger,
    *,
    liquidity_is_cap: bool = False,
    market: Decimal | None = None,
) -> Decimal:
    """Fill as much of ``order`` as liquidity allows at ``price``; returns the quantity filled.

    ``volume`` is the tick volume (on arrival) or, with ``liquidity_is_cap``, the quantity still
    available in this tick. IOC keeps what it got and expires the rest; FOK fills completely or
    expires untouched.
    """
    rules = ledger.rules
    remaining = order.quantity - order.executed_quantity
    quantity = remaining
    if rules.participation > 0 and volume is not None:
        cap = volume if liquidity_is_cap else money(volume * rules.participation)
        quantity = min(remaining, cap)
    if order.time_in_force == TimeInForce.FOK and quantity < remaining:
        ledger.expire(order, f"fill-or-kill: only {quantity} of {remaining} available")
        return Decimal(0)
    if quantity <= 0:
        if order.time_in_force != TimeInForce.GTC:
            ledger.expire(order, "no liquidity")
        return Decimal(0)
    try:
        ledger.fill(order, price, quantity, market=market)
    except Rejected as rejection:
        return reduce_only(order, price, quantity, ledger, rejection, market)
    except ArithmeticError as exc:
        ledger.reject(order, f"the exchange cannot process this order: {exc!r}", "invalid_order")
        return Decimal(0)
    if order.time_in_force == TimeInForce.IOC and order.status == OrderStatus.PARTIALLY_FILLED:
        unfilled = order.quantity - order.executed_quantity
        ledger.expire(order, f"immediate-or-cancel: {unfilled} unfilled")
    return quantity
