"""The worker's building blocks: leader election by advisory lock, the seeded simulated feed."""

from __future__ import annotations

import signal
import time
from decimal import Decimal

from peewee import fn

from app.leadership import Leadership
from app.models import MarketPrice, Order, SystemEvent, Trade, TradingSession
from app.runtime_config import update_config
from app.trading.feeds import DEFAULT_START_PRICE, SimulatedFeed, followed_symbols
from app.trading.market import record_tick
from app.trading.orders import OrderRequest, place_order
from app.trading.sessions import start_session
from tests.factories import make_session
from tests.live import start_worker


def test_only_one_engine_leads_and_a_standby_takes_over(app, database_url):
    active = Leadership(database_url, "active:1", takeover_seconds=10, key=991)
    standby = Leadership(database_url, "standby:2", takeover_seconds=10, key=991)
    try:
        assert active.try_acquire()
        active_epoch = active.epoch
        assert not standby.try_acquire()
        active.release()  # the active engine dies: its connection, and so its lock, goes away
        # The server frees the lock once that backend has exited, which is asynchronous: the
        # standby keeps polling, as the engine does every second.
        deadline = time.monotonic() + 10
        while not standby.try_acquire():
            assert time.monotonic() < deadline, "the standby never got the lock"
            time.sleep(0.05)
        assert standby.heartbeat()
        assert standby.epoch == active_epoch + 1
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


def wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def place_market_orders(session, count: int) -> None:
    for _ in range(count):
        place_order(
            OrderRequest(
                symbol=session.symbol, side="BUY", type="MARKET", quantity=Decimal("0.01"),
                session_id=session.id,
            )
        )  # fmt: skip


def test_failover_takes_over_and_no_order_is_filled_twice(app, database_url):
    update_config({"max_position_size": 1})
    session = start_session("BTC/USDT", Decimal(1_000_000), "PAPER")
    record_tick("BTC/USDT", Decimal(100))
    place_market_orders(session, 300)
    workers = [start_worker(database_url), start_worker(database_url)]
    try:
        filled = Order.select().where(Order.status == "FILLED")
        wait_for(lambda: filled.count() > 0)
        leader = next(
            worker
            for worker in workers
            if SystemEvent.select()
            .where(SystemEvent.data["metadata"]["process"].cast("text").endswith(f":{worker.pid}"))
            .exists()
        )
        leader.kill()  # crash mid-stream: no cleanup, the lock goes with its connection
        place_market_orders(session, 50)
        record_tick("BTC/USDT", Decimal(101))
        wait_for(lambda: filled.count() == 350, timeout=30)
        started = SystemEvent.select().where(SystemEvent.data["status"] == "engine_started")
        assert started.count() == 2
        per_order = (
            Trade.select(Trade.order, fn.COUNT(Trade.id).alias("fills"))
            .group_by(Trade.order)
            .having(fn.COUNT(Trade.id) > 1)
        )
        assert list(per_order) == []
        assert Trade.select().count() == 350
        assert TradingSession.get_by_id(session.id).cash == Decimal(1_000_000) - sum(
            (t.quote_quantity + t.commission for t in Trade.select()), Decimal(0)
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=15)
