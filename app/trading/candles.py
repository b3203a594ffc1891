"""Candles (OHLCV) built from the market ticks, aligned to 2000-01-01 UTC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.db import db


@dataclass(frozen=True)
class Candle:
    start: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


CANDLES_SQL = """
SELECT date_bin(make_interval(secs => %s), tick_time, TIMESTAMPTZ '2000-01-01') AS bucket,
       (array_agg(price ORDER BY tick_time, id))[1] AS open,
       max(price) AS high,
       min(price) AS low,
       (array_agg(price ORDER BY tick_time DESC, id DESC))[1] AS close,
       COALESCE(sum(volume), 0) AS volume
  FROM market_ticks
 WHERE symbol = %s
   AND tick_time >= %s - make_interval(secs => %s)
   AND tick_time < %s
 GROUP BY bucket
 ORDER BY bucket
"""


def closed_candles(symbol: str, seconds: int, count: int, until: datetime) -> list[Candle]:
    """The last ``count`` complete candles of ``symbol`` that closed at or before ``until``."""
    end = bucket_start(until, seconds)
    rows = db.execute_sql(CANDLES_SQL, (seconds, symbol, end, seconds * count, end)).fetchall()
    return [
        Candle(row[0], float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5]))
        for row in rows
    ]


def recent_candles(symbol: str, seconds: int, count: int, now: datetime) -> list[Candle]:
    """The last ``count`` candles of ``symbol`` up to ``now``, the one still forming included
    (a chart shows it; the agents wait for it to close)."""
    return closed_candles(symbol, seconds, count, now + timedelta(seconds=seconds))


def bucket_start(moment: datetime, seconds: int) -> datetime:
    """Start of the candle containing ``moment`` (candles are aligned to 2000-01-01 UTC)."""
    epoch = moment.timestamp()
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=moment.tzinfo)
