"""The exchange's rules in force, and the pure price rules every fill path shares."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from app.precision import ARITHMETIC_PRECISION
from app.runtime_config import trading_rules
from app.vocabulary import STOP_TYPES, PositionSide, Side

MONEY = Decimal("1e-18")
# The largest order notional (price x quantity) the engine fills, leaving room under the
# columns' 10^18 for cash, equity and fees.
MAX_NOTIONAL = Decimal("1e15")


MONEY_CONTEXT = decimal.Context(prec=ARITHMETIC_PRECISION, rounding=ROUND_HALF_EVEN)


def money(value: Decimal) -> Decimal:
    """Round to the database's 18 decimal places, so memory and rows always agree."""
    return value.quantize(MONEY, context=MONEY_CONTEXT)


@dataclass(frozen=True)
class Rules:
    """The exchange and risk settings in force for one processing pass."""

    slippage: Decimal = Decimal("0.0005")
    commission_rate: Decimal = Decimal("0.001")
    participation: Decimal = Decimal(0)
    max_position_size: Decimal = Decimal("0.2")
    max_positions: int = 3
    max_daily_loss: Decimal = Decimal("0.05")
    max_drawdown: Decimal = Decimal("0.15")
    default_stop_loss: Decimal = Decimal("0.02")
    default_take_profit: Decimal = Decimal("0.05")
    max_price_age_seconds: float = 60.0

    @classmethod
    def current(cls) -> Rules:
        """Read the defaults and the overrides stored in the database."""
        return cls.from_config(trading_rules())

    @classmethod
    def from_config(cls, config: dict) -> Rules:
        """Build the rules from an already loaded configuration document."""
        exchange, risk = config["exchange"], config["risk"]

        def dec(value) -> Decimal:
            return Decimal(str(value))

        return cls(
            slippage=dec(exchange["slippage_bps"]) / 10_000,
            commission_rate=dec(exchange["commission_rate"]),
            participation=dec(exchange["liquidity_participation"]),
            max_position_size=dec(risk["max_position_size"]),
            max_positions=int(config["trading"]["max_positions"]),
            max_daily_loss=dec(risk["max_daily_loss"]),
            max_drawdown=dec(risk["max_drawdown"]),
            default_stop_loss=dec(risk["default_stop_loss"]),
            default_take_profit=dec(risk["default_take_profit"]),
            max_price_age_seconds=float(exchange.get("max_price_age_seconds", 60)),
        )


class Rejected(Exception):
    """The fill would break a limit; the message names it, ``reason`` classifies it (a short
    code: the label of the rejected-orders metric)."""

    def __init__(self, message: str, reason: str = "risk_limit"):
        super().__init__(message)
        self.reason = reason


def market_fill_price(side: str, last: Decimal, rules: Rules) -> Decimal:
    """Last price moved against the taker by the configured slippage."""
    factor = 1 + rules.slippage if side == Side.BUY else 1 - rules.slippage
    return money(last * factor)


def marketable_limit_price(side: str, limit: Decimal, last: Decimal, rules: Rules) -> Decimal:
    """A limit that is marketable when it starts working takes the market, never worse than
    its limit (resting limits that a later tick crosses fill at the limit itself)."""
    slipped = market_fill_price(side, last, rules)
    return min(limit, slipped) if side == Side.BUY else max(limit, slipped)


def limit_crossed(side: str, limit: Decimal, price: Decimal) -> bool:
    return price <= limit if side == Side.BUY else price >= limit


def stop_triggered(order_type: str, side: str, stop_price: Decimal, price: Decimal) -> bool:
    """STOP_LOSS fires when price moves against the order's side, TAKE_PROFIT in its favour."""
    rising = price >= stop_price
    falling = price <= stop_price
    if order_type in STOP_TYPES:
        return rising if side == Side.BUY else falling
    return falling if side == Side.BUY else rising


def protective_levels(side: str, entry: Decimal, rules: Rules) -> tuple[Decimal, Decimal | None]:
    """(stop_loss, take_profit) from the default fractions, on the losing/winning side of entry.

    A short's take-profit at a fraction of 100 % or more would be a price of zero or less: it can
    never be reached, so the position simply has none.
    """
    if side == PositionSide.LONG:
        return money(entry * (1 - rules.default_stop_loss)), money(
            entry * (1 + rules.default_take_profit)
        )
    take_profit = entry * (1 - rules.default_take_profit)
    return money(entry * (1 + rules.default_stop_loss)), (
        money(take_profit) if take_profit > 0 else None
    )


def protective_exit(side: str, stop_loss, take_profit, price: Decimal) -> str | None:
    """ "stop_loss" or "take_profit" when ``price`` crossed that level of a position, else None."""
    if side == PositionSide.LONG:
        if stop_loss is not None and price <= stop_loss:
            return "stop_loss"
        if take_profit is not None and price >= take_profit:
            return "take_profit"
    else:
        if stop_loss is not None and price >= stop_loss:
            return "stop_loss"
        if take_profit is not None and price <= take_profit:
            return "take_profit"
    return None
