"""An exchange's market rules (tick size, lot size, minimum notional), applied on a ccxt feed.

On MARKET_FEED=ccxt:<exchange> orders follow the rules of the exchange's market, in PAPER as
they would in LIVE, so that a strategy that works on paper does not fail live on a rounding
rule: a manual order that breaks one is refused with a 400 naming the rule and the market's
value, and an agent's quantity is rounded down to the lot size. The rules are what the exchange
process last loaded (``exchange_markets``); nothing here talks to the exchange. On the
simulated, replay and manual feeds there are no such rules.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from decimal import ROUND_DOWN, Decimal

from psycopg2.extras import execute_values

from app.db import db
from app.errors import InvalidInput, Unavailable
from app.statements import dicts


@dataclass(frozen=True)
class MarketRule:
    exchange: str
    symbol: str
    active: bool
    tick_size: Decimal | None = None
    lot_size: Decimal | None = None
    min_quantity: Decimal | None = None
    max_quantity: Decimal | None = None
    min_notional: Decimal | None = None


COLUMNS = "exchange, symbol, active, tick_size, lot_size, min_quantity, max_quantity, min_notional"


def store_markets(exchange: str, rules: list[MarketRule]) -> None:
    """Replace what is known of ``exchange``'s markets (the exchange process, after loading)."""
    with db.atomic(), db.cursor() as cursor:
        cursor.execute("DELETE FROM exchange_markets WHERE exchange = %s", (exchange,))
        # MarketRule's fields are COLUMNS, in order.
        execute_values(cursor, f"INSERT INTO exchange_markets ({COLUMNS}) VALUES %s",
                       [astuple(rule) for rule in rules], page_size=500)  # fmt: skip


def market_rule(exchange: str, symbol: str) -> MarketRule:
    """The rule of ``symbol`` on ``exchange``: 400 when the exchange does not list it, 503 while
    the exchange process has not loaded the exchange's markets yet."""
    rows = dicts(
        db.execute_sql(
            f"SELECT {COLUMNS} FROM exchange_markets WHERE exchange = %s AND symbol = %s",
            (exchange, symbol),
        )
    )
    if not rows:
        loaded = db.execute_sql(
            "SELECT EXISTS (SELECT 1 FROM exchange_markets WHERE exchange = %s)", (exchange,)
        ).fetchone()[0]
        if not loaded:
            raise Unavailable(
                f"the markets of {exchange} are not loaded yet",
                details="the exchange process loads them when it starts; retry in a few seconds",
                retry_after=5,
            )
    rule = MarketRule(**rows[0]) if rows else None
    if rule is None or not rule.active:
        listed = "does not list" if rule is None else "has suspended"
        raise InvalidInput(
            f"{exchange} {listed} {symbol}",
            details=f"the market feed is {exchange}; choose a symbol it trades",
            field="symbol",
            exchange=exchange,
        )
    return rule


def round_down_to_lot(rule: MarketRule, quantity: Decimal) -> Decimal:
    """``quantity`` rounded down to a multiple of the lot size (unchanged without one)."""
    if not rule.lot_size:
        return quantity
    return (quantity / rule.lot_size).to_integral_value(ROUND_DOWN) * rule.lot_size


def _multiple(value: Decimal, step: Decimal | None) -> bool:
    return not step or (value / step) == (value / step).to_integral_value()


def _refuse(rule: MarketRule, field: str, name: str, value: Decimal, message: str):
    raise InvalidInput(
        f"{field} breaks the {name} rule of {rule.symbol} on {rule.exchange}",
        details=message,
        field=field,
        rule=name,
        market_value=f"{value.normalize():f}",
    )


def check_order(
    rule: MarketRule,
    quantity: Decimal,
    prices: dict[str, Decimal | None],
    market_price: Decimal | None,
) -> None:
    """400 naming the rule when an order breaks one: a quantity off the lot size or outside the
    market's bounds, a price off the tick size, or a notional below the minimum."""
    if rule.lot_size and not _multiple(quantity, rule.lot_size):
        _refuse(rule, "quantity", "lot_size", rule.lot_size,
                f"quantities are multiples of {rule.lot_size.normalize():f}")  # fmt: skip
    if rule.min_quantity and quantity < rule.min_quantity:
        _refuse(rule, "quantity", "min_quantity", rule.min_quantity,
                f"the smallest quantity is {rule.min_quantity.normalize():f}")  # fmt: skip
    if rule.max_quantity and quantity > rule.max_quantity:
        _refuse(rule, "quantity", "max_quantity", rule.max_quantity,
                f"the largest quantity is {rule.max_quantity.normalize():f}")  # fmt: skip
    for field, price in prices.items():
        if price is not None and rule.tick_size and not _multiple(price, rule.tick_size):
            _refuse(rule, field, "tick_size", rule.tick_size,
                    f"prices are multiples of {rule.tick_size.normalize():f}")  # fmt: skip
    reference = prices.get("price") or market_price
    if rule.min_notional and reference is not None and quantity * reference < rule.min_notional:
        _refuse(rule, "quantity", "min_notional", rule.min_notional,
                f"price x quantity is {(quantity * reference).normalize():f}; the market's "
                f"minimum is {rule.min_notional.normalize():f}")  # fmt: skip
