"""Session statistics on known series, and the replay feed's file format and tick path."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from app.models import EquitySnapshot, MarketPrice, MarketTick
from app.trading.feeds import REPLAY_DIR, ReplayFeed, read_candles, write_sample
from app.trading.matching import process_pending
from app.trading.stats import max_drawdown, sharpe_ratio


def test_max_drawdown_is_the_deepest_fall_from_a_running_peak():
    assert max_drawdown([D(100), D(120), D(90), D(130), D(117)]) == D("0.25")
    assert max_drawdown([D(100), D(101), D(102)]) == 0
    assert max_drawdown([]) == 0


def test_max_drawdown_matches_a_reference_on_a_random_curve():
    rng = random.Random(11)
    curve = [D(10_000)]
    for _ in range(500):
        curve.append(curve[-1] * D(repr(round(1 + rng.gauss(0, 0.01), 6))))
    peaks = list(itertools.accumulate(curve, max))
    reference = max(float((peak - value) / peak) for peak, value in zip(peaks, curve, strict=True))
    assert float(max_drawdown(curve)) == pytest.approx(reference, abs=1e-9)


def test_max_drawdown_never_exceeds_everything_lost():
    assert max_drawdown([D(100), D(-50)]) == 1  # was 1.5: equity below zero is a total loss
    assert max_drawdown([D(-5), D(-10), D(-2)]) == 1  # was 0 for a curve that never rose above 0


def test_sharpe_of_a_known_daily_series():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    equity = [D(100), D(110), D(99), D("108.9")]  # returns +10 %, -10 %, +10 %
    points = [(start + timedelta(days=i), value) for i, value in enumerate(equity)]
    # mean/stdev = (1/30) / sqrt(1/75) = 1/(2 sqrt 3); x sqrt(365 samples a year)
    assert float(sharpe_ratio(points, 86400)) == pytest.approx(math.sqrt(365 / 12), rel=1e-6)


def reference_sharpe(points, step: float) -> float:
    """empyrical.sharpe_ratio(returns, risk_free=0, annualization=year/step) written out:
    the last equity at each grid time, simple returns, mean / sample stdev x sqrt(periods)."""
    start = points[0][0]
    grid = []
    k = 0
    while start + timedelta(seconds=k * step) <= points[-1][0]:
        at = start + timedelta(seconds=k * step)
        grid.append(float([value for moment, value in points if moment <= at][-1]))
        k += 1
    returns = [b / a - 1 for a, b in itertools.pairwise(grid)]
    mean = sum(returns) / len(returns)
    variance = sum((r - mean) ** 2 for r in returns) / (len(returns) - 1)
    return mean / math.sqrt(variance) * math.sqrt(365 * 24 * 3600 / step)


def test_sharpe_resamples_on_a_regular_grid_and_matches_the_reference():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    rng = random.Random(3)
    points, equity, moment = [], D(10_000), start
    for _ in range(400):
        moment += timedelta(seconds=rng.choice([0.002, 0.5, 3, 10, 10, 10, 25]))
        equity *= D(repr(round(1 + rng.gauss(0.0002, 0.003), 6)))
        points.append((moment, equity))
    ours = float(sharpe_ratio(points, 10))
    assert ours == pytest.approx(reference_sharpe(points, 10), abs=1e-9)
    # A burst of fill samples milliseconds apart does not shorten the horizon of the returns
    # (with the median interval it did, and the annualisation exploded).
    burst = [
        (points[5][0] + timedelta(milliseconds=ms), points[5][1] * D("1.0001") ** (ms % 2))
        for ms in range(1, 401)
    ]
    with_burst = sorted([*points, *burst])
    assert float(sharpe_ratio(with_burst, 10)) == pytest.approx(ours, abs=1e-9)


def test_sharpe_is_zero_without_enough_variation():
    start = datetime(2025, 1, 1, tzinfo=UTC)
    flat = [(start + timedelta(minutes=i), D(100)) for i in range(5)]
    assert sharpe_ratio(flat, 60) == 0
    assert sharpe_ratio(flat[:2], 60) == 0


def test_shipped_sample_is_valid_and_reproducible(tmp_path):
    shipped = sorted(REPLAY_DIR.glob("*.csv"))
    assert [path.name for path in shipped] == ["BTC-USDT.csv", "ETH-USDT.csv"]
    assert len(read_candles(shipped[0])) == 720
    regenerated = write_sample(tmp_path)
    assert [path.read_text() for path in regenerated] == [path.read_text() for path in shipped]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("time,open,high,low,close,volume\n", "expected columns"),
        ("timestamp,open,high,low,close,volume\n", "no candles"),
        ("timestamp,open,high,low,close,volume\nt,1,2,x,1,1\n", "not a number"),
        ("timestamp,open,high,low,close,volume\nt,10,9,8,10,1\n", "inconsistent"),
    ],
)
def test_bad_replay_files_are_refused(tmp_path, content, problem):
    path = tmp_path / "BTC-USDT.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=problem):
        read_candles(path)


def test_replay_plays_each_candle_as_four_ticks(app, tmp_path):
    (tmp_path / "SOL-USDT.csv").write_text(
        "timestamp,open,high,low,close,volume\n"
        "2025-01-15T00:00:00Z,100,104,99,103,8\n"
        "2025-01-15T00:01:00Z,103,103.5,97,98,4\n"
    )
    feed = ReplayFeed(directory=tmp_path, speed=120)
    assert feed.interval == pytest.approx(0.125)
    for _ in range(9):
        feed.tick([])
    ticks = list(MarketTick.select().where(MarketTick.symbol == "SOL/USDT").order_by(MarketTick.id))
    assert [t.price for t in ticks] == [100, 99, 104, 103, 103, D("103.5"), 97, 98, 100]
    assert [t.volume for t in ticks[:4]] == [2, 2, 2, 2]
    assert {t.source for t in ticks} == {"replay"}
    assert MarketPrice.get_by_id("SOL/USDT").price == 100


def test_replayed_ticks_carry_market_time_whatever_the_speed(app, tmp_path):
    (tmp_path / "SOL-USDT.csv").write_text(
        "timestamp,open,high,low,close,volume\n"
        "2025-01-15T00:00:00Z,100,104,99,103,8\n"
        "2025-01-15T00:01:00Z,103,103.5,97,98,4\n"
    )
    feed = ReplayFeed(directory=tmp_path, speed=600, candle_seconds=60)
    for _ in range(9):  # played in an instant of wall time
        feed.tick([])
    times = [
        t.tick_time
        for t in MarketTick.select().where(MarketTick.symbol == "SOL/USDT").order_by(MarketTick.id)
    ]
    # Each tick is a quarter of a one-minute candle later on the replay's clock.
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(times)] == [15.0] * 8
    assert MarketPrice.get_by_id("SOL/USDT").price_time == times[-1]
    # A restarted replay continues after the last replayed price: its clock never goes back.
    restarted = ReplayFeed(directory=tmp_path, speed=600, candle_seconds=60)
    restarted.tick([])
    assert MarketPrice.get_by_id("SOL/USDT").price_time > times[-1]


def test_equity_samples_carry_the_market_time_of_their_tick(client):
    from tests.test_exchange import Desk

    desk = Desk(client)
    posted_at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    client.post(
        "/api/v1/market/prices",
        json={"symbol": "BTC/USDT", "price": 100, "timestamp": posted_at.isoformat()},
    )
    desk.order("BUY", 1)  # fills on arrival at the price posted for 12:00
    limit = desk.order("BUY", 1, type="LIMIT", price=99)
    client.post(
        "/api/v1/market/prices",
        json={
            "symbol": "BTC/USDT",
            "price": 98,
            "timestamp": (posted_at + timedelta(minutes=5)).isoformat(),
        },
    )
    process_pending(desk.rules)
    assert desk.reload(limit).status == "FILLED"
    samples = [
        s.sampled_at
        for s in EquitySnapshot.select()
        .where(EquitySnapshot.session == desk.session_id)
        .order_by(EquitySnapshot.id)
    ]
    assert samples == [posted_at, posted_at + timedelta(minutes=5)]
