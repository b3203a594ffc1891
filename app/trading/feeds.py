"""Market data feeds that write ticks: a seeded random walk, or none (manual ticks via the API)."""

from __future__ import annotations

import csv
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

from peewee import fn

from app.models import (
    ACTIVE_SESSION_STATUSES,
    OPEN_ORDER_STATUSES,
    MarketPrice,
    MarketTick,
    Order,
    Position,
    TradingSession,
    utcnow,
)
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
    """Configured symbols, those of active sessions, and any with working orders or positions."""
    active = TradingSession.select(TradingSession.symbol).where(
        TradingSession.status.in_(ACTIVE_SESSION_STATUSES)
    )
    working = Order.select(Order.symbol).where(Order.status.in_(OPEN_ORDER_STATUSES))
    held = Position.open_anywhere().select(Position.symbol)
    symbols = set(configured)
    for query in (active, working, held):
        symbols |= {row.symbol for row in query.distinct()}
    return sorted(symbols)


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
    interval: float = 1.0
    # Seconds of past ticks written for a symbol the feed has never priced, so that indicators
    # have history at once (0 = none). The engine sets it from the agents' lookback.
    history_seconds: int = 0
    rng: random.Random = field(init=False)
    prices: dict[str, Decimal] = field(default_factory=dict)

    def __post_init__(self):
        self.rng = random.Random(self.seed)

    def _start_price(self, symbol: str) -> Decimal:
        stored = MarketPrice.get_or_none(MarketPrice.symbol == symbol)
        if stored is not None:
            return stored.price
        start = START_PRICES.get(symbol, DEFAULT_START_PRICE)
        if self.history_seconds > 0:
            return self._backfill(symbol, start)
        return start

    def _backfill(self, symbol: str, start: Decimal) -> Decimal:
        """Write ``history_seconds`` of past ticks ending now; returns the last price.

        They are marked processed: history for the indicators, never something to match.
        """
        now = utcnow()
        steps = max(1, int(self.history_seconds / self.interval))
        price = start
        rows = []
        for step in range(steps, 0, -1):
            self.prices[symbol] = price
            price, volume = self.next_price(symbol)
            stamp = now - timedelta(seconds=step * self.interval)
            rows.append(
                {
                    "symbol": symbol,
                    "price": price,
                    "volume": volume,
                    "source": "simulated-history",
                    "tick_time": stamp,
                    "processed_at": now,
                    "created_at": now,
                }
            )
        for chunk in range(0, len(rows), 1000):
            MarketTick.insert_many(rows[chunk : chunk + 1000]).execute()
        return price

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


REPLAY_DIR = Path(__file__).resolve().parent / "data" / "replay"
CSV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Candle:
    timestamp: str
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def path(self) -> list[Decimal]:
        """The four ticks a candle replays as: open, the nearer extreme, the other, close."""
        if self.close >= self.open:
            return [self.open, self.low, self.high, self.close]
        return [self.open, self.high, self.low, self.close]


def read_candles(path: Path) -> list[Candle]:
    """Read an OHLCV CSV: header ``timestamp,open,high,low,close,volume``, one candle a row."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise ValueError(f"{path}: expected columns {','.join(CSV_COLUMNS)}")
        candles = []
        for line, row in enumerate(reader, start=2):
            try:
                candle = Candle(row["timestamp"], *(Decimal(row[c]) for c in CSV_COLUMNS[1:]))
            except (ArithmeticError, TypeError) as exc:
                raise ValueError(f"{path}:{line}: not a number ({exc})") from None
            if (
                not candle.low
                <= min(candle.open, candle.close)
                <= max(candle.open, candle.close)
                <= candle.high
                or candle.low <= 0
            ):
                raise ValueError(f"{path}:{line}: inconsistent OHLC values")
            candles.append(candle)
    if not candles:
        raise ValueError(f"{path}: no candles")
    return candles


@dataclass
class ReplayFeed:
    """Replays OHLCV files (``BASE-QUOTE.csv`` in ``directory``) in a loop at ``speed``.

    Each candle becomes four ticks (see :meth:`Candle.path`), each with a quarter of its volume;
    ``speed`` 60 plays one minute candle per second. Ticks carry market time: the replay's own
    clock, which starts when the replay starts (or just after the last replayed price, so it
    never runs backwards across restarts) and advances one candle per candle played, so at
    ``speed`` 60 an hour of market passes in a minute. Statistics annualise by market time, so
    the speed does not inflate them.
    """

    directory: Path = REPLAY_DIR
    speed: float = 60.0
    candle_seconds: float = 60.0
    series: dict[str, list[Decimal]] = field(default_factory=dict)
    volumes: dict[str, list[Decimal]] = field(default_factory=dict)
    position: int = 0
    clock_start: datetime | None = None

    def __post_init__(self):
        files = sorted(Path(self.directory).glob("*.csv"))
        if not files:
            raise SystemExit(f"MARKET_FEED=replay: no CSV files in {self.directory}")
        for path in files:
            symbol = path.stem.replace("-", "/").upper()
            candles = read_candles(path)
            self.series[symbol] = [price for candle in candles for price in candle.path()]
            self.volumes[symbol] = [candle.volume / 4 for candle in candles for _ in range(4)]

    @classmethod
    def from_settings(cls, settings) -> ReplayFeed:
        return cls(
            directory=Path(settings.replay_dir or REPLAY_DIR),
            speed=settings.replay_speed,
            candle_seconds=settings.replay_candle_seconds,
        )

    @property
    def interval(self) -> float:
        return self.candle_seconds / self.speed / 4

    def market_time(self, position: int) -> datetime:
        """When the ``position``-th replayed tick happens on the replay's clock."""
        if self.clock_start is None:
            latest = (
                MarketPrice.select(fn.MAX(MarketPrice.price_time))
                .where(MarketPrice.symbol.in_(list(self.series)), MarketPrice.source == "replay")
                .scalar()
            )
            start = utcnow()
            if latest is not None and latest >= start:
                start = latest + timedelta(seconds=self.candle_seconds)
            self.clock_start = start
        return self.clock_start + timedelta(seconds=position * self.candle_seconds / 4)

    def tick(self, symbols: list[str]) -> None:
        """Write the next tick of every replayed symbol (the files decide what is replayed)."""
        moment = self.market_time(self.position)
        for symbol, prices in self.series.items():
            index = self.position % len(prices)
            record_tick(
                symbol,
                prices[index],
                volume=self.volumes[symbol][index],
                timestamp=moment,
                source="replay",
            )
        self.position += 1


def write_sample(directory: Path = REPLAY_DIR, candles: int = 720, seed: int = 7) -> list[Path]:
    """Generate the shipped sample: 12 hours of 1-minute BTC/USDT and ETH/USDT candles.

    The walk has regimes (rally, chop, sell-off, recovery) so that replays exercise both sides
    of every strategy.
    """
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    regimes = [0.0006, 0.0, -0.0008, 0.0003]
    written = []
    for symbol, start in (("BTC/USDT", 65000.0), ("ETH/USDT", 3500.0)):
        price = start
        path = directory / f"{symbol.replace('/', '-')}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for minute in range(candles):
                drift = regimes[minute * len(regimes) // candles]
                open_ = price
                steps = [open_]
                for _ in range(4):
                    steps.append(steps[-1] * math.exp(drift / 4 + 0.0008 * rng.gauss(0, 1)))
                close = steps[-1]
                high = max(steps) * (1 + abs(rng.gauss(0, 0.0002)))
                low = min(steps) * (1 - abs(rng.gauss(0, 0.0002)))
                volume = rng.lognormvariate(0, 0.4) * (12 if symbol == "BTC/USDT" else 150)
                stamp = f"2025-01-15T{minute // 60:02d}:{minute % 60:02d}:00Z"
                writer.writerow(
                    [stamp]
                    + [f"{value:.2f}" for value in (open_, high, low, close)]
                    + [f"{volume:.4f}"]
                )
                price = close
        written.append(path)
    return written
