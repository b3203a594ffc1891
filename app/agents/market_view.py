"""What the agents see: candles built from ticks, indicators (talipp), and a context embedding.

The embedding is a fixed 16-dimension description of the market at a candle, each dimension
squashed into [-1, 1] so that no single one dominates the cosine similarity:

| # | feature | scaling |
| --- | --- | --- |
| 0 | return over 1 candle | tanh(r / 0.005) |
| 1 | return over 5 candles | tanh(r / 0.01) |
| 2 | return over 20 candles | tanh(r / 0.02) |
| 3 | return over 50 candles (or all there is) | tanh(r / 0.04) |
| 4 | RSI(14) | (rsi - 50) / 50 |
| 5 | MACD(12,26,9) histogram | tanh(hist / price x 2000) |
| 6 | Bollinger(20,2) %B | clip(2 x (%B - 0.5), -1, 1) |
| 7 | Bollinger bandwidth | tanh(width / price x 50) x 2 - 1 |
| 8 | volatility: stdev of 20 one-candle returns | tanh(stdev / 0.002) x 2 - 1 |
| 9 | volume z-score of the last candle over 20 | tanh(z / 2) |
| 10 | trend slope: least-squares slope of 20 closes | tanh(slope / price x 2000) |
| 11 | EMA(9) - EMA(21) spread | tanh(spread / price x 500) |
| 12 | ADX(14) trend strength | adx / 50 - 1, clipped |
| 13 | distance from EMA(50) | tanh((close - ema50) / price x 100) |
| 14 | position in the 20-candle range | 2 x (close - low) / (high - low) - 1 |
| 15 | bias | 0.25 (keeps the vector non-zero in a perfectly flat market) |
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass, field
from decimal import Decimal

from talipp.indicators import ADX, BB, EMA, MACD, RSI
from talipp.ohlcv import OHLCV

from app.trading.candles import Candle, bucket_start, closed_candles

__all__ = ["Candle", "bucket_start", "closed_candles"]

EMBEDDING_SIZE = 16
# MACD(12,26,9) needs 34 closes; fewer candles than this and the agents wait.
MIN_CANDLES = 35


@dataclass(frozen=True)
class Indicators:
    """Latest indicator values, plus the previous EMA spread and MACD histogram for crossovers."""

    close: float
    rsi: float
    macd: float
    macd_signal: float
    macd_histogram: float
    previous_histogram: float
    bb_lower: float
    bb_middle: float
    bb_upper: float
    ema9: float
    ema21: float
    ema50: float
    previous_ema_spread: float
    adx: float
    plus_di: float
    minus_di: float
    extras: dict = field(default_factory=dict)

    @property
    def percent_b(self) -> float:
        width = self.bb_upper - self.bb_lower
        return 0.5 if width == 0 else (self.close - self.bb_lower) / width

    def as_context(self) -> dict:
        """Rounded values for a decision's context (and the LLM prompt)."""
        return {
            "price": round(self.close, 8),
            "rsi": round(self.rsi, 2),
            "macd": round(self.macd, 6),
            "macd_signal": round(self.macd_signal, 6),
            "macd_histogram": round(self.macd_histogram, 6),
            "bollinger": {
                "lower": round(self.bb_lower, 6),
                "middle": round(self.bb_middle, 6),
                "upper": round(self.bb_upper, 6),
                "percent_b": round(self.percent_b, 4),
            },
            "ema9": round(self.ema9, 6),
            "ema21": round(self.ema21, 6),
            "ema50": round(self.ema50, 6),
            "adx": round(self.adx, 2),
            "plus_di": round(self.plus_di, 2),
            "minus_di": round(self.minus_di, 2),
            **self.extras,
        }


def _last(values, fallback: float = 0.0):
    present = [value for value in values if value is not None]
    return present[-1] if present else fallback


def compute_indicators(candles: list[Candle]) -> Indicators | None:
    """RSI(14), MACD(12,26,9), Bollinger(20,2), EMA 9/21/50 and ADX(14); None if too few candles."""
    if len(candles) < MIN_CANDLES:
        return None
    closes = [candle.close for candle in candles]
    rsi = RSI(14, closes)
    macd = MACD(12, 26, 9, closes)
    bands = BB(20, 2, closes)
    ema9, ema21, ema50 = EMA(9, closes), EMA(21, closes), EMA(min(50, len(closes)), closes)
    adx = ADX(
        14,
        14,
        [OHLCV(c.open, c.high, c.low, c.close, c.volume) for c in candles],
    )
    histograms = [
        value.histogram for value in macd if value is not None and value.histogram is not None
    ]
    latest_macd = _last(macd)
    latest_band = _last(bands)
    latest_adx = _last(adx)
    spread_now = _last(ema9) - _last(ema21)
    spread_before = (ema9[-2] or 0.0) - (ema21[-2] or 0.0) if len(closes) > 1 else spread_now
    return Indicators(
        close=closes[-1],
        rsi=_last(rsi, 50.0),
        macd=latest_macd.macd if latest_macd else 0.0,
        macd_signal=(latest_macd.signal or 0.0) if latest_macd else 0.0,
        macd_histogram=histograms[-1] if histograms else 0.0,
        previous_histogram=histograms[-2] if len(histograms) > 1 else 0.0,
        bb_lower=latest_band.lb if latest_band else closes[-1],
        bb_middle=latest_band.cb if latest_band else closes[-1],
        bb_upper=latest_band.ub if latest_band else closes[-1],
        ema9=_last(ema9, closes[-1]),
        ema21=_last(ema21, closes[-1]),
        ema50=_last(ema50, closes[-1]),
        previous_ema_spread=spread_before,
        adx=(latest_adx.adx or 0.0) if latest_adx else 0.0,
        plus_di=(latest_adx.plus_di or 0.0) if latest_adx else 0.0,
        minus_di=(latest_adx.minus_di or 0.0) if latest_adx else 0.0,
    )


def _return(closes: list[float], back: int) -> float:
    back = min(back, len(closes) - 1)
    return closes[-1] / closes[-1 - back] - 1 if back > 0 and closes[-1 - back] else 0.0


def _clip(value: float) -> float:
    return max(-1.0, min(1.0, value))


def context_embedding(candles: list[Candle], indicators: Indicators) -> list[float]:
    """The 16-dimension market context described in this module's docstring."""
    closes = [c.close for c in candles]
    price = closes[-1] or 1.0
    window = closes[-21:]
    returns = [b / a - 1 for a, b in itertools.pairwise(window) if a]
    volatility = statistics.pstdev(returns) if len(returns) > 1 else 0.0
    volumes = [c.volume for c in candles[-20:]]
    spread = statistics.pstdev(volumes) if len(volumes) > 1 else 0.0
    volume_z = (volumes[-1] - statistics.fmean(volumes)) / spread if spread > 0 else 0.0
    last20 = closes[-20:]
    n = len(last20)
    mean_x, mean_y = (n - 1) / 2, statistics.fmean(last20)
    denominator = sum((i - mean_x) ** 2 for i in range(n)) or 1.0
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(last20)) / denominator
    high20, low20 = max(c.high for c in candles[-20:]), min(c.low for c in candles[-20:])
    range_position = 2 * (closes[-1] - low20) / (high20 - low20) - 1 if high20 > low20 else 0.0
    width = indicators.bb_upper - indicators.bb_lower
    vector = [
        math.tanh(_return(closes, 1) / 0.005),
        math.tanh(_return(closes, 5) / 0.01),
        math.tanh(_return(closes, 20) / 0.02),
        math.tanh(_return(closes, 50) / 0.04),
        _clip((indicators.rsi - 50) / 50),
        math.tanh(indicators.macd_histogram / price * 2000),
        _clip(2 * (indicators.percent_b - 0.5)),
        math.tanh(width / price * 50) * 2 - 1,
        math.tanh(volatility / 0.002) * 2 - 1,
        math.tanh(volume_z / 2),
        math.tanh(slope / price * 2000),
        math.tanh((indicators.ema9 - indicators.ema21) / price * 500),
        _clip(indicators.adx / 50 - 1),
        math.tanh((closes[-1] - indicators.ema50) / price * 100),
        _clip(range_position),
        0.25,
    ]
    return [round(value, 6) for value in vector]


def as_decimal(value: float) -> Decimal:
    return Decimal(repr(value))
