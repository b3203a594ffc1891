"""Live market data from an exchange through ccxt (MARKET_FEED=ccxt:<exchange>).

Each poll reads the tickers of the followed symbols (active sessions, working orders, held
positions and ``trading.symbols``) and writes each as a market tick with the exchange's own
timestamp and its name as the source; the engine matches paper orders on them as on any tick.
A ticker whose price and 24 h volume have not changed since the last poll writes nothing. A
tick's volume is what the exchange's rolling 24 h volume grew by since the previous poll (none
on the first poll, or when the window's roll makes it shrink).

A symbol seen for the first time gets the agents' lookback as history first, from the
exchange's OHLCV (four processed ticks per candle: open, the extremes, close), so agents can
decide within seconds. A symbol the exchange does not list is skipped with one ``error`` event.
Network errors, rate limits and an exchange that is down make the feed back off (doubling up to
a minute) and publish one ``error`` event per outage, and a ``system_status`` when it recovers.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt

from app.db import db
from app.events import publish_error, publish_status
from app.exchange.connect import TRANSIENT, market_rules
from app.models import MarketTick, utcnow
from app.process_metrics import FEED_FAILURES, FEED_TICKS
from app.trading.market import record_tick
from app.trading.market_rules import store_markets

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
MARKETS_RELOAD_SECONDS = 3600.0
TIMEFRAMES = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}
MAX_HISTORY_CANDLES = 1000


class Backoff:
    """Doubling waits while something fails; reports the start and the end of an outage once."""

    def __init__(self, base: float):
        self.base = base
        self.wait = base
        self.failing_since: float | None = None
        self.not_before = 0.0

    def due(self, now: float) -> bool:
        return now >= self.not_before

    def failed(self, now: float) -> bool:
        """Record a failure; True for the first of an outage."""
        first = self.failing_since is None
        if first:
            self.failing_since = now
            self.wait = self.base
        else:
            self.wait = min(self.wait * 2, MAX_BACKOFF_SECONDS)
        self.not_before = now + self.wait
        return first

    def succeeded(self) -> float | None:
        """Record a success; the outage's length when one just ended."""
        ended = None
        if self.failing_since is not None:
            ended = time.monotonic() - self.failing_since
        self.failing_since = None
        self.wait = self.base
        self.not_before = 0.0
        return ended

    def report_failure(self, now: float, error: str, detail: str, *, severity: str,
                       **metadata) -> None:  # fmt: skip
        """Record a failure: logged each time, an ``error`` event for the first of an outage."""
        first = self.failed(now)
        log.warning("%s (%s), next try in %.0f s", error, detail, self.wait)
        if first:
            with db.connection_context():
                publish_error(error, f"{detail}; retrying with back-off", severity=severity,
                              **metadata)  # fmt: skip

    def report_success(self, status: str, exchange: str) -> None:
        """Record a success: a ``system_status`` ``status`` when an outage just ended."""
        ended = self.succeeded()
        if ended is not None:
            with db.connection_context():
                publish_status(status, f"{exchange} answers again", exchange=exchange,
                               outage_seconds=round(ended, 1))  # fmt: skip


class CcxtFeed:
    """Polls one exchange's tickers into market ticks (run by the exchange process)."""

    def __init__(self, client, poll_seconds: float):
        self.client = client
        self.exchange = client.id
        self.interval = poll_seconds
        self.backoff = Backoff(poll_seconds)
        self.markets_loaded_at: float | None = None
        self.last: dict[str, tuple[Decimal, int | None, Decimal | None]] = {}
        self.history_done: set[str] = set()
        self.unlisted_announced: set[str] = set()

    # -- markets ---------------------------------------------------------------------------------
    def load_markets(self) -> int:
        """Load the exchange's markets and store their rules for the web and the agents."""
        markets = self.client.load_markets(reload=True)
        rules = market_rules(self.exchange, markets, self.client.precisionMode)
        with db.connection_context():
            store_markets(self.exchange, rules)
        self.markets_loaded_at = time.monotonic()
        log.info("loaded %s markets of %s", len(rules), self.exchange)
        return len(rules)

    def listed(self, symbol: str) -> bool:
        market = (self.client.markets or {}).get(symbol)
        return market is not None and market.get("active") is not False

    # -- polling ---------------------------------------------------------------------------------
    def poll(self, symbols: list[str], candle_seconds: int, lookback_candles: int) -> int:
        """One poll if due (not while backing off); how many ticks were written."""
        now = time.monotonic()
        if not self.backoff.due(now):
            return 0
        try:
            if self.markets_loaded_at is None or now - self.markets_loaded_at > (
                MARKETS_RELOAD_SECONDS
            ):
                self.load_markets()
            wanted = [symbol for symbol in symbols if self._listed_or_announce(symbol)]
            for symbol in wanted:
                if symbol not in self.history_done:
                    self.backfill(symbol, candle_seconds, lookback_candles)
            written = self._write_tickers(wanted)
        except TRANSIENT as exc:
            self._outage(now, exc)
            return 0
        except ccxt.BadSymbol as exc:
            # A market delisted since the markets were loaded: reload them at the next poll.
            self.markets_loaded_at = None
            self._outage(now, exc)
            return 0
        self.backoff.report_success("feed_recovered", self.exchange)
        return written

    def _outage(self, now: float, exc: Exception) -> None:
        FEED_FAILURES.labels(self.exchange, type(exc).__name__).inc()
        self.backoff.report_failure(now, f"Market feed {self.exchange} is failing",
                                    f"{type(exc).__name__}: {str(exc)[:300]}",
                                    severity="medium", exchange=self.exchange)  # fmt: skip

    def _listed_or_announce(self, symbol: str) -> bool:
        if self.listed(symbol):
            return True
        if symbol not in self.unlisted_announced:
            self.unlisted_announced.add(symbol)
            with db.connection_context():
                publish_error(
                    f"{self.exchange} does not list {symbol}",
                    f"no ticks for {symbol}: the market feed is {self.exchange}",
                    severity="medium",
                    exchange=self.exchange,
                    symbol=symbol,
                )
        return False

    def _tickers(self, symbols: list[str]) -> dict:
        """All tickers in one request where the exchange offers it, else one by one: then a
        symbol that fails is skipped this poll and the others keep flowing; only when every
        one fails is it an outage."""
        if self.client.has.get("fetchTickers"):
            return self.client.fetch_tickers(symbols)
        tickers, failure = {}, None
        for symbol in symbols:
            try:
                tickers[symbol] = self.client.fetch_ticker(symbol)
            except TRANSIENT as exc:
                failure = exc
        if failure is not None and not tickers:
            raise failure
        return tickers

    def _write_tickers(self, symbols: list[str]) -> int:
        if not symbols:
            return 0
        tickers = self._tickers(symbols)
        written = 0
        with db.connection_context():
            for symbol in symbols:
                ticker = tickers.get(symbol)
                if not ticker or ticker.get("last") is None:
                    continue
                price = Decimal(repr(ticker["last"]))
                stamp = ticker.get("timestamp")
                total = ticker.get("baseVolume")
                total = None if total is None else Decimal(repr(total))
                previous = self.last.get(symbol)
                if previous is not None and (previous[0], previous[2]) == (price, total):
                    continue  # same price, same 24 h volume: nothing traded since the last poll
                volume = None
                if previous is not None and previous[2] is not None and total is not None:
                    grown = total - previous[2]
                    volume = grown if grown > 0 else None
                self.last[symbol] = (price, stamp, total)
                at = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None
                record_tick(symbol, price, volume=volume, timestamp=at, source=self.exchange)
                written += 1
        FEED_TICKS.labels(self.exchange).inc(written)
        return written

    # -- history ---------------------------------------------------------------------------------
    def backfill(self, symbol: str, candle_seconds: int, lookback_candles: int) -> int:
        """Write the lookback's candles as processed history ticks, unless history is there."""
        window = timedelta(seconds=candle_seconds * lookback_candles)
        with db.connection_context():
            has_history = (
                MarketTick.select()
                .where(MarketTick.symbol == symbol, MarketTick.tick_time <= utcnow() - window * 0.9)
                .exists()
            )
        if has_history or not self.client.has.get("fetchOHLCV"):
            self.history_done.add(symbol)
            return 0
        timeframe, seconds = self._timeframe(candle_seconds)
        wanted = min(MAX_HISTORY_CANDLES, -(-candle_seconds * lookback_candles // seconds) + 1)
        candles = self.client.fetch_ohlcv(symbol, timeframe, limit=wanted)
        now = utcnow()
        rows = []
        for opened_ms, open_, high, low, close, volume in candles:
            opened = datetime.fromtimestamp(opened_ms / 1000, UTC)
            path = (open_, low, high, close) if close >= open_ else (open_, high, low, close)
            share = None if volume is None else Decimal(repr(volume)) / 4
            for step, price in enumerate(path):
                rows.append({
                    "symbol": symbol, "price": Decimal(repr(price)), "volume": share,
                    "source": f"{self.exchange}-history", "processed_at": now, "created_at": now,
                    "tick_time": opened + timedelta(seconds=seconds * step / 4),
                })  # fmt: skip
        with db.connection_context(), db.atomic():
            for chunk in range(0, len(rows), 1000):
                MarketTick.insert_many(rows[chunk : chunk + 1000]).execute()
        self.history_done.add(symbol)
        log.info("backfilled %s candles of %s from %s", len(candles), symbol, self.exchange)
        return len(candles)

    def _timeframe(self, candle_seconds: int) -> tuple[str, int]:
        """The exchange's timeframe equal to the agents' candle, else its finest one."""
        offered = {name: seconds for name, seconds in TIMEFRAMES.items()
                   if name in (self.client.timeframes or TIMEFRAMES)}  # fmt: skip
        for name, seconds in offered.items():
            if seconds == candle_seconds:
                return name, seconds
        name = min(offered, key=offered.get)
        return name, offered[name]
