"""Session statistics from the equity curve: maximum drawdown and the Sharpe ratio.

Both are computed from the same samples that ``GET /sessions/{id}/equity`` returns, so a client
can recompute them; a peak seen only between two samples does not count.
"""

from __future__ import annotations

import bisect
import itertools
import math
import statistics
from datetime import datetime, timedelta
from decimal import Decimal

SECONDS_PER_YEAR = 365 * 24 * 3600


def max_drawdown(equity: list[Decimal]) -> Decimal:
    """Largest fall from a running peak, as a fraction of that peak (0.1 = 10 %), at most 1.

    Equity at or below zero has lost everything: a fall to it, or a curve that never rose above
    zero, is a drawdown of 1 (100 %), never more.
    """
    peak = None
    worst = Decimal(0)
    for value in equity:
        if peak is None or value > peak:
            peak = value
        if peak <= 0:
            worst = Decimal(1)
        elif value < peak:
            worst = max(worst, min(Decimal(1), (peak - value) / peak))
    return worst


def resample(points: list[tuple[datetime, Decimal]], step: timedelta) -> list[Decimal]:
    """The last equity at or before each grid time first, first + step, … up to the last sample.

    Samples taken at fills land milliseconds apart; a regular grid gives every return the same
    horizon, so annualising by the step means what it says.
    """
    if not points:
        return []
    times = [moment for moment, _ in points]
    grid_points = int((times[-1] - times[0]) / step) + 1
    values = []
    for index in range(grid_points):
        at = times[0] + index * step
        values.append(points[bisect.bisect_right(times, at) - 1][1])
    return values


def sharpe_ratio(points: list[tuple[datetime, Decimal]], step_seconds: float) -> Decimal:
    """Annualised Sharpe ratio of the equity curve resampled every ``step_seconds``.

    r_k = e_k / e_(k-1) - 1 on the grid; Sharpe = mean(r) / stdev(r) x sqrt(year / step), with
    the sample standard deviation (ddof 1) and a risk-free rate of 0 (empyrical's definition).
    Fewer than two returns, or no variation, gives 0.
    """
    values = resample(points, timedelta(seconds=step_seconds))
    returns = [
        float(current / previous - 1)
        for previous, current in itertools.pairwise(values)
        if previous > 0
    ]
    if len(returns) < 2:
        return Decimal(0)
    spread = statistics.stdev(returns)
    if spread == 0:
        return Decimal(0)
    annualised = statistics.fmean(returns) / spread * math.sqrt(SECONDS_PER_YEAR / step_seconds)
    return Decimal(repr(annualised))
