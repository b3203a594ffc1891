"""Market data feeds that write ticks: a seeded random walk, or none (manual ticks via the API)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from app.models import ACTIVE_SESSION_STATUSES, MarketPrice, TradingSession
from app.trading.market import record_tick

# Realistic starting points for the majors; anything else starts at DEFAULT_START_PRICE.
START_PRICES = {
    "BTC/USDT": Decimal("65000"),
    "ETH/USDT": Decimal("3500"),
    "SOL/USDT": Decimal("150"),
    "BNB/USDT": Decimal("600"),
    "XRP/USDT": Decimal("0.6"),
    "ADA/USDT": Decimal("0.45"),
    "DOGE/USDT": Decimal("0.15"),
}
DEFAULT_START_PRICE = Decimal("100")
PRICE_PLACES = Decimal("0.00000001")


def followed_symbols(configured: list[str]) -> list[str]:
    """Configured symbols plus those of every RUNNING or PAUSED session."""
    active = TradingSession.select(TradingSession.symbol).where(
        TradingSession.status.in_(ACTIVE_SESSION_STATUSES)
    )
    return sorted(set(configured) | {row.symbol for row in active})


@dataclass
class SimulatedFeed:
    """Geometric random walk per symbol, reproducible from ``seed``.

    Each tick multiplies the price by exp((drift - vol²/2) + vol·z), z ~ N(0, 1); volume is
    log-normal around ``base_volume``. A restarted feed continues from the stored price.
    """

    seed: int = 42
    drift: float = 0.0
    volatility: float = 0.0005
    base_volume: float = 5.0
    rng: random.Random = field(init=False)
    prices: dict[str, Decimal] = field(default_factory=dict)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def _start_price(self, symbol: str) -> Decimal:
        stored = MarketPrice.get_or_none(MarketPrice.symbol == symbol)
        if stored is not None:
            return stored.price
        return START_PRICES.get(symbol, DEFAULT_START_PRICE)

    def next_price(self, symbol: str) -> tuple[Decimal, Decimal]:
        """Advance ``symbol`` one step; returns (price, volume)."""
        current = self.prices.get(symbol) or self._start_price(symbol)
        shock = self.rng.gauss(0.0, 1.0)
        factor = math.exp(self.drift - self.volatility**2 / 2 + self.volatility * shock)
        price = (current * Decimal(repr(factor))).quantize(PRICE_PLACES, ROUND_HALF_EVEN)
        price = max(price, PRICE_PLACES)
        self.prices[symbol] = price
        volume = Decimal(repr(round(self.rng.lognormvariate(0, 0.5) * self.base_volume, 6)))
        return price, volume

    def tick(self, symbols: list[str]) -> None:
        """Write one tick for every symbol."""
        for symbol in symbols:
            price, volume = self.next_price(symbol)
            record_tick(symbol, price, volume=volume, source="simulated")
