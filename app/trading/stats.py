"""Session statistics from the equity curve: maximum drawdown and the Sharpe ratio."""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import datetime
from decimal import Decimal

SECONDS_PER_YEAR = 365 * 24 * 3600


def max_drawdown(equity: list[Decimal]) -> Decimal:
    """Largest fall from a running peak, as a fraction of that peak (0.1 = 10 %)."""
    peak = None
    worst = Decimal(0)
    for value in equity:
        if peak is None or value > peak:
            peak = value
        elif peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst


def sharpe_ratio(points: list[tuple[datetime, Decimal]]) -> Decimal:
    """Annualised Sharpe ratio of the equity curve, risk-free rate 0.

    r_i = equity_i / equity_(i-1) - 1 for consecutive samples; Sharpe = mean(r) / stdev(r) x
    sqrt(N), where N = samples per year at the median sampling interval. Fewer than three samples,
    or no variation, gives 0.
    """
    if len(points) < 3:
        return Decimal(0)
    returns = [
        float(current / previous - 1)
        for (_, previous), (_, current) in itertools.pairwise(points)
        if previous > 0
    ]
    intervals = [
        (later - earlier).total_seconds() for (earlier, _), (later, _) in itertools.pairwise(points)
    ]
    interval = statistics.median(intervals)
    if len(returns) < 2 or interval <= 0:
        return Decimal(0)
    spread = statistics.stdev(returns)
    if spread == 0:
        return Decimal(0)
    annualised = statistics.fmean(returns) / spread * math.sqrt(SECONDS_PER_YEAR / interval)
    return Decimal(repr(round(annualised, 6)))
