"""Real markets through ccxt, against a local fake exchange (Binance's spot dialect over HTTP):
the feed, the exchange process and its leadership, and the market's rules on paper."""

from __future__ import annotations

import json
import signal
from dataclasses import replace
from decimal import Decimal

import pytest

from app import create_app
from app.agents.risk import Proposal, RiskAgent
from app.db import db
from app.exchange.connect import build_client
from app.exchange.feed import CcxtFeed
from app.models import MarketPrice, MarketTick, Order, SystemEvent
from app.process_metrics import FEED_FAILURES, FEED_TICKS
from app.settings import load_defaults
from app.trading.market_rules import MarketRule, round_down_to_lot, store_markets
from app.trading.rules import Rules
from tests.conftest import with_key
from tests.factories import counted
from tests.fake_exchange import FakeExchange
from tests.live import start_worker, wait_until

FEED = "ccxt:binance"


@pytest.fixture
def fake():
    exchange = FakeExchange()
    yield exchange
    exchange.close()


def feed_settings(settings, fake):
    return replace(settings, market_feed=FEED, exchange_urls=tuple(fake.urls.items()),
                   feed_poll_seconds=0.2)  # fmt: skip


@pytest.fixture
def feed(settings, fake, app):
    return CcxtFeed(build_client("binance", feed_settings(settings, fake)), poll_seconds=0.2)


@pytest.fixture
def ccxt_client(settings, fake, admin_key):
    """An app on the ccxt feed (its markets loaded, as the exchange process does)."""
    return with_key(create_app(feed_settings(settings, fake)).test_client(), admin_key)


def events(kind: str) -> list[dict]:
    return [e.data for e in SystemEvent.select().where(SystemEvent.type == kind).order_by(
        SystemEvent.id)]  # fmt: skip


# -- the feed -------------------------------------------------------------------------------------
def test_tickers_become_ticks_with_the_exchanges_time_volume_and_name(feed, fake):
    assert feed.poll(["BTC/USDT", "ETH/USDT"], 60, 30) == 2
    ticks = {t.symbol: t for t in MarketTick.select().where(MarketTick.source == "binance")}
    assert ticks["BTC/USDT"].price == Decimal("65000") and ticks["ETH/USDT"].price == 3500
    assert MarketPrice.get_by_id("BTC/USDT").source == "binance"
    # An unchanged ticker writes nothing; a new price writes a tick, with the volume traded since.
    assert feed.poll(["BTC/USDT", "ETH/USDT"], 60, 30) == 0
    fake.prices["BTCUSDT"] = Decimal("65100.5")
    fake.volumes["BTCUSDT"] += Decimal("2.5")
    assert feed.poll(["BTC/USDT", "ETH/USDT"], 60, 30) == 1
    assert counted(FEED_TICKS, exchange="binance") >= 3
    latest = MarketTick.select().where(MarketTick.source == "binance").order_by(
        MarketTick.id.desc()).get()  # fmt: skip
    assert (latest.symbol, latest.price, latest.volume) == ("BTC/USDT", Decimal("65100.5"), 2.5)
    # The exchange's markets and their rules are stored for the web and the agents.
    rule = db.execute_sql(
        "SELECT tick_size, lot_size, min_notional FROM exchange_markets "
        "WHERE exchange = 'binance' AND symbol = 'BTC/USDT'"
    ).fetchone()
    assert rule == (Decimal("0.01"), Decimal("0.00001"), Decimal("5"))


def test_a_new_symbol_gets_the_agents_lookback_from_the_exchanges_ohlcv(feed, fake):
    feed.poll(["SOL/USDT"], 60, 30)
    history = MarketTick.select().where(MarketTick.source == "binance-history")
    assert history.count() == 31 * 4  # the lookback's candles and the one in progress
    assert all(tick.processed_at is not None for tick in history)  # history, never matched
    assert fake.calls("GET", "/klines") == 1
    feed.history_done.clear()  # a restarted process sees the history is there
    feed.poll(["SOL/USDT"], 60, 30)
    assert fake.calls("GET", "/klines") == 1


def test_an_unlisted_symbol_is_skipped_once_and_the_others_keep_flowing(feed):
    for _ in range(3):
        feed.poll(["NOPE/USDT", "BTC/USDT"], 60, 30)
    assert [e["error"] for e in events("error")] == ["binance does not list NOPE/USDT"]
    assert MarketPrice.get_or_none(MarketPrice.symbol == "BTC/USDT") is not None


@pytest.mark.parametrize("status", [429, 500, 503])
def test_failures_back_off_and_are_reported_once_per_outage(feed, fake, status):
    feed.poll(["BTC/USDT"], 60, 30)  # markets loaded, history written
    fake.fail_next("/ticker/24hr", status, times=4)
    waits = []
    for _ in range(4):
        feed.backoff.not_before = 0  # due now, whatever the back-off says
        assert feed.poll(["BTC/USDT"], 60, 30) == 0
        waits.append(feed.backoff.wait)
    assert waits == [0.2, 0.4, 0.8, 1.6]  # doubling
    # While backing off, a poll makes no request at all.
    requests = len(fake.requests)
    feed.backoff.not_before = float("inf")
    assert feed.poll(["BTC/USDT"], 60, 30) == 0 and len(fake.requests) == requests
    feed.backoff.not_before = 0
    fake.prices["BTCUSDT"] = Decimal("64000")
    assert feed.poll(["BTC/USDT"], 60, 30) == 1
    assert [e["error"] for e in events("error")] == ["Market feed binance is failing"]
    assert [e["status"] for e in events("system_status")] == ["feed_recovered"]
    assert feed.backoff.wait == 0.2
    # Every failed poll is counted, for the heartbeat row the web's /metrics exports.
    assert counted(FEED_FAILURES, exchange="binance") >= 4


def test_an_exchange_that_is_down_at_start_is_retried(feed, fake):
    fake.down = True
    assert feed.poll(["BTC/USDT"], 60, 30) == 0
    fake.down = False
    feed.backoff.not_before = 0
    assert feed.poll(["BTC/USDT"], 60, 30) == 1


# -- the market's rules on paper ------------------------------------------------------------------
def load_markets(feed) -> None:
    feed.load_markets()


def test_a_symbol_the_exchange_does_not_list_is_refused_at_start(ccxt_client, feed):
    before = ccxt_client.post("/api/v1/trade/start", json={"symbol": "BTC/USDT"})
    assert before.status_code == 503 and "not loaded yet" in before.json["error"]
    assert before.headers["Retry-After"] == "5"
    load_markets(feed)
    refused = ccxt_client.post("/api/v1/trade/start", json={"symbol": "DOGE/USDT"})
    assert refused.status_code == 400
    assert refused.json["error"] == "binance does not list DOGE/USDT"
    assert refused.json["exchange"] == "binance" and refused.json["field"] == "symbol"
    assert ccxt_client.post("/api/v1/trade/start", json={"symbol": "BTC/USDT"}).status_code == 201


@pytest.mark.parametrize(
    "order, rule, value",
    [
        ({"type": "MARKET", "quantity": 0.000015}, "lot_size", "0.00001"),
        ({"type": "MARKET", "quantity": 10000}, "max_quantity", "9000"),
        ({"type": "LIMIT", "quantity": 0.001, "price": 64000.005}, "tick_size", "0.01"),
        ({"type": "LIMIT", "quantity": 0.00002, "price": 64000}, "min_notional", "5"),
        ({"type": "MARKET", "quantity": 0.00007}, "min_notional", "5"),  # at the latest price
        ({"type": "STOP_LOSS", "quantity": 0.001, "stop_price": 60000.001}, "tick_size", "0.01"),
    ],
)
def test_a_manual_order_that_breaks_a_market_rule_is_refused_naming_it(
    ccxt_client, feed, order, rule, value
):
    feed.poll(["BTC/USDT"], 60, 30)
    assert ccxt_client.post("/api/v1/trade/start", json={"symbol": "BTC/USDT"}).status_code == 201
    response = ccxt_client.post("/api/v1/orders", json={"symbol": "BTC/USDT", "side": "BUY",
                                                        **order})  # fmt: skip
    assert response.status_code == 400, response.json
    assert response.json["rule"] == rule and response.json["market_value"] == value
    assert "binance" in response.json["error"] and response.json["field"] in (
        "quantity", "price", "stop_price")  # fmt: skip
    assert Order.select().count() == 0
    fine = ccxt_client.post("/api/v1/orders", json={"symbol": "BTC/USDT", "side": "BUY",
                                                    "type": "LIMIT", "quantity": 0.001,
                                                    "price": 64000.01})  # fmt: skip
    assert fine.status_code == 201


def test_on_the_simulated_feed_prices_and_quantities_stay_as_they_are(client):
    assert client.post("/api/v1/trade/start", json={"symbol": "DOGE/USDT"}).status_code == 201
    placed = client.post("/api/v1/orders", json={"symbol": "DOGE/USDT", "side": "BUY",
                                                 "type": "LIMIT", "quantity": 0.123456789,
                                                 "price": 0.1234567})  # fmt: skip
    assert placed.status_code == 201


def test_an_agents_quantity_is_rounded_down_to_the_lot_size():
    market = MarketRule("binance", "BTC/USDT", True, Decimal("0.01"), Decimal("0.001"),
                        Decimal("0.001"), None, Decimal("5"))  # fmt: skip
    rules = Rules.from_config(load_defaults())
    proposal = dict(session_status="RUNNING", side="BUY", consensus=Decimal("0.9"),
                    price=Decimal("65000"), equity=Decimal("100000"), drawdown=Decimal(0),
                    position_quantity=Decimal(0), open_positions=0)  # fmt: skip
    sized = RiskAgent().evaluate(Proposal(**proposal, market=market), rules, Decimal("0.5"))
    assert sized.approved and sized.quantity == Decimal("0.276")  # 18,000 / 65,000 = 0.27692…
    assert round_down_to_lot(market, Decimal("0.2769")) == Decimal("0.276")
    strict = replace(market, min_notional=Decimal("1000"))  # 0.011 x 65,000 = 715 is below
    small = RiskAgent().evaluate(Proposal(**{**proposal, "equity": Decimal("4000")},
                                          market=strict), rules, Decimal("0.5"))  # fmt: skip
    assert not small.approved and "below the minimum order" in small.reasoning


# -- the exchange process -------------------------------------------------------------------------
def process_env(fake) -> dict:
    return {"MARKET_FEED": FEED, "EXCHANGE_URLS": json.dumps(fake.urls),
            "FEED_POLL_SECONDS": "0.2", "ENGINE_TAKEOVER_SECONDS": "3"}  # fmt: skip


def roles() -> dict[str, str]:
    return dict(db.execute_sql(
        "SELECT role, count(*) FROM process_heartbeats WHERE kind = 'exchange' "
        "AND beat_at > now() - interval '5 seconds' GROUP BY role").fetchall())  # fmt: skip


def test_paper_trading_on_exchange_prices_end_to_end(database_url, fake, ccxt_client):
    env = process_env(fake)
    exchange = start_worker(database_url, command="exchange", **env)
    engine = start_worker(database_url, command="worker", **env)
    try:
        wait_until(lambda: MarketPrice.get_or_none(MarketPrice.symbol == "BTC/USDT"), timeout=30)
        started = ccxt_client.post(
            "/api/v1/trade/start", json={"symbol": "ETH/USDT", "initial_capital": 10000}
        )
        assert started.status_code == 201
        # The session's symbol is followed: its history and its price arrive.
        wait_until(lambda: MarketPrice.get_or_none(MarketPrice.symbol == "ETH/USDT"), timeout=30)
        assert (
            MarketTick.select()
            .where(MarketTick.symbol == "ETH/USDT", MarketTick.source == "binance-history")
            .count()
            > 0
        )
        placed = ccxt_client.post(
            "/api/v1/orders",
            json={"symbol": "ETH/USDT", "side": "BUY", "type": "MARKET", "quantity": 0.1},
        )
        assert placed.status_code == 201
        order_id = placed.json["order"]["id"]

        def filled():
            order = Order.get_by_id(order_id)
            return order if order.status == "FILLED" else None

        order = wait_until(filled, timeout=30)
        quote = order.executed_quote_quantity
        assert quote / Decimal("0.1") >= Decimal("3500")  # the exchange's price, plus slippage
        # A new price on the exchange reaches the position's mark.
        fake.prices["ETHUSDT"] = Decimal("3600")
        wait_until(lambda: MarketPrice.get_by_id("ETH/USDT").price == Decimal("3600"),
                   timeout=30)  # fmt: skip
    finally:
        for process in (exchange, engine):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def test_one_exchange_process_leads_and_a_standby_takes_over_from_a_killed_one(database_url, fake):
    env = process_env(fake)
    first = start_worker(database_url, command="exchange", **env)
    second = None
    try:
        wait_until(lambda: roles().get("active") == 1, timeout=30)
        second = start_worker(database_url, command="exchange", **env)
        wait_until(lambda: roles() == {"active": 1, "standby": 1}, timeout=30)
        first.kill()  # kill -9: the lock goes with its connection
        first.wait(timeout=10)
        requests = len(fake.requests)
        wait_until(lambda: len(fake.requests) > requests + 3, timeout=30)
        holder = db.execute_sql("SELECT holder FROM engine_leader WHERE id <> 1").fetchone()[0]
        assert holder.endswith(f":{second.pid}")
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)


def test_store_markets_replaces_what_was_known(app):
    store_markets("kraken", [MarketRule("kraken", "BTC/USD", True)])
    store_markets("kraken", [MarketRule("kraken", "ETH/USD", False)])
    assert db.execute_sql("SELECT symbol, active FROM exchange_markets").fetchall() == [
        ("ETH/USD", False)]  # fmt: skip


def test_without_a_tickers_endpoint_a_failing_symbol_does_not_stop_the_others(feed, fake):
    feed.client.has["fetchTickers"] = False
    feed.poll(["BTC/USDT", "ETH/USDT"], 60, 30)
    fake.prices["BTCUSDT"], fake.prices["ETHUSDT"] = Decimal("64000"), Decimal("3400")
    fake.fail_next("/ticker/24hr", 500, times=1)  # the first symbol's request fails
    assert feed.poll(["BTC/USDT", "ETH/USDT"], 60, 30) == 1
    assert MarketPrice.get_by_id("ETH/USDT").price == Decimal("3400")
    assert events("error") == []  # one symbol's hiccup is not an outage
