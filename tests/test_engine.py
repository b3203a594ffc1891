"""The worker's building blocks: leader election by advisory lock, the seeded simulated feed."""

from __future__ import annotations

from decimal import Decimal

from app.engine import LeaderLock
from app.models import MarketPrice
from app.trading.feeds import DEFAULT_START_PRICE, SimulatedFeed, followed_symbols
from tests.factories import make_session


def test_only_one_engine_leads_and_a_standby_takes_over(app, database_url):
    active = LeaderLock(database_url, key=991)
    standby = LeaderLock(database_url, key=991)
    try:
        assert active.try_acquire()
        assert not standby.try_acquire()
        active.release()  # the active engine dies: its connection, and so its lock, goes away
        assert standby.try_acquire()
        assert standby.still_held()
    finally:
        active.release()
        standby.release()


def test_simulated_feed_is_reproducible_from_its_seed(app):
    first = SimulatedFeed(seed=7)
    second = SimulatedFeed(seed=7)
    path_a = [first.next_price("BTC/USDT") for _ in range(20)]
    path_b = [second.next_price("BTC/USDT") for _ in range(20)]
    assert path_a == path_b
    prices = [price for price, _ in path_a]
    assert all(Decimal("55000") < price < Decimal("75000") for price in prices)
    assert len(set(prices)) > 15


def test_feed_follows_active_sessions_and_continues_from_stored_price(app):
    make_session(symbol="PEPE/USDT")
    make_session(symbol="OLD/USDT", status="STOPPED")
    symbols = followed_symbols(["BTC/USDT"])
    assert symbols == ["BTC/USDT", "PEPE/USDT"]
    feed = SimulatedFeed(seed=1, volatility=0.0)
    feed.tick(symbols)
    assert MarketPrice.get_by_id("PEPE/USDT").price == DEFAULT_START_PRICE
    MarketPrice.update(price=Decimal("123.45")).where(MarketPrice.symbol == "PEPE/USDT").execute()
    restarted = SimulatedFeed(seed=1, volatility=0.0)
    assert restarted.next_price("PEPE/USDT")[0] == Decimal("123.45")
