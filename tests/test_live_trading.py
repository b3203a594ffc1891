"""LIVE mode against a local fake exchange (Binance's spot dialect over real HTTP): starting a
LIVE session, orders sent after the risk checks, partial and whole fills reconciled into trades
and positions, cancels, the kill switch, pauses, lost answers, refusals and back-off.

Most tests drive the exchange process's :class:`LiveAccount` pass by pass, so every step is
checked at the point it happens; the last one runs the real exchange and engine processes.
"""

from __future__ import annotations

import json
import logging
import signal
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

import pytest

from app import create_app
from app.db import db
from app.exchange import sending
from app.exchange.account import LiveAccount
from app.exchange.connect import build_client
from app.models import Order, Position, SystemEvent, Trade, TradingSession, utcnow
from app.process_metrics import LIVE_ORDERS
from app.trading.market import record_tick
from app.trading.marking import mark_to_market
from app.trading.matching import process_pending
from app.trading.rules import Rules
from tests.conftest import with_key
from tests.factories import counted, make_key
from tests.fake_exchange import FakeExchange
from tests.live import start_worker, wait_until

API_KEY = "live-api-key-planted-0001"
API_SECRET = "live-api-secret-planted-0002"


@pytest.fixture
def fake():
    exchange = FakeExchange()
    yield exchange
    exchange.close()


def live_settings(settings, fake):
    return replace(settings, exchange_id="binance", exchange_api_key=API_KEY,
                   exchange_api_secret=API_SECRET, exchange_urls=tuple(fake.urls.items()),
                   feed_poll_seconds=0.2)  # fmt: skip


@pytest.fixture
def account(settings, fake, app):
    client = build_client("binance", live_settings(settings, fake), credentials=True)
    return LiveAccount(client, 0.2)


@pytest.fixture
def live(settings, fake, admin_key):
    """An admin client of an app with LIVE credentials, trading_mode set to live."""
    client = with_key(create_app(live_settings(settings, fake)).test_client(), admin_key)
    assert client.patch("/api/v1/config", json={"trading_mode": "live"}).status_code == 200
    return client


def run(account: LiveAccount, passes: int = 1) -> None:
    """Exchange-process passes, each one due to poll."""
    for _ in range(passes):
        account.next_poll = 0.0
        account.backoff.not_before = 0.0
        account.cycle()


def start_live(live, account, capital=10_000) -> str:
    run(account)  # the account is read: clock, balance, markets
    started = live.post(
        "/api/v1/trade/start",
        json={"symbol": "BTC/USDT", "initial_capital": capital, "mode": "LIVE"},
    )
    assert started.status_code == 201, started.json
    run(account)  # the exchange's price of the session's symbol
    return started.json["session_id"]


def start_holding(live, account, fake) -> str:
    """A LIVE session holding 0.01 BTC, bought with a MARKET order the exchange filled."""
    session_id = start_live(live, account)
    held = place(live, type="MARKET", quantity=0.01)
    run(account)
    fake.fill(on_exchange(fake, held["id"])["orderId"], "0.01")
    run(account)
    return session_id


def place(live, **order) -> dict:
    placed = live.post("/api/v1/orders", json={"symbol": "BTC/USDT", "side": "BUY", **order})
    assert placed.status_code == 201, placed.json
    return placed.json["order"]


def on_exchange(fake, order_id: str) -> dict:
    found = fake.order_by_client_id(order_id)
    assert found is not None, "the order is not on the exchange"
    return found


def events(kind: str) -> list[dict]:
    return [e.data for e in SystemEvent.select().where(SystemEvent.type == kind)]


# -- starting -------------------------------------------------------------------------------------
def test_a_live_session_needs_credentials_live_mode_an_admin_and_a_readable_account(
    client, settings, fake, admin_key, account
):
    body = {"symbol": "BTC/USDT", "initial_capital": 10_000, "mode": "LIVE"}
    refused = client.post("/api/v1/trade/start", json=body)
    assert refused.status_code == 400 and "credentials" in refused.json["error"]
    assert "EXCHANGE_ID" in refused.json["details"]

    app = create_app(live_settings(settings, fake))
    admin = with_key(app.test_client(), admin_key)
    off = admin.post("/api/v1/trade/start", json=body)
    assert off.status_code == 400 and off.json["error"] == "LIVE trading is switched off"
    assert admin.patch("/api/v1/config", json={"trading_mode": "live"}).status_code == 200

    trader = with_key(app.test_client(), make_key("trader"))
    forbidden = trader.post("/api/v1/trade/start", json=body)
    assert forbidden.status_code == 403 and "admin" in forbidden.json["details"]
    assert trader.post("/api/v1/trade/start", json={**body, "mode": "PAPER"}).status_code == 201

    unread = admin.post("/api/v1/trade/start", json=body)
    assert unread.status_code == 503 and unread.headers["Retry-After"] == "5"
    assert "has not read the account" in unread.json["details"]
    assert client.get("/api/v1/status").json["live_account"] is None  # no LIVE credentials
    shown = admin.get("/api/v1/status").json["live_account"]
    assert shown["exchange"] == "binance" and shown["state"] == "unavailable"

    fake.clock_offset_ms = 9_000
    run(account)
    skewed = admin.post("/api/v1/trade/start", json=body)
    assert skewed.status_code == 503 and "clock is" in skewed.json["details"]
    fake.clock_offset_ms = 0
    fake.fail_next("/account", 500)
    account.next_check = 0
    run(account)
    unreadable = admin.post("/api/v1/trade/start", json=body)
    assert unreadable.status_code == 503 and "Internal error" in unreadable.json["details"]

    account.next_check = 0
    run(account)
    rich = admin.post("/api/v1/trade/start", json={**body, "initial_capital": 200_000})
    assert rich.status_code == 400 and rich.json["field"] == "initial_capital"
    assert "100000 USDT free" in rich.json["details"]
    unlisted = admin.post("/api/v1/trade/start", json={**body, "symbol": "DOGE/USDT"})
    assert unlisted.status_code == 400
    assert unlisted.json["error"] == "binance does not list DOGE/USDT"
    ready = admin.get("/api/v1/status").json["live_account"]
    assert ready["state"] == "ready" and ready["markets"] == 3 and ready["problem"] is None
    started = admin.post("/api/v1/trade/start", json=body)
    assert started.status_code == 201 and started.json["mode"] == "LIVE"
    session = TradingSession.get_by_id(started.json["session_id"])
    assert session.exchange == "binance" and session.initial_capital == 10_000


def test_live_orders_take_only_what_the_exchange_is_sent(live, account):
    start_live(live, account)
    stop = live.post("/api/v1/orders", json={"symbol": "BTC/USDT", "side": "SELL",
                                             "type": "STOP_LOSS", "quantity": 0.001,
                                             "stop_price": 60000})  # fmt: skip
    assert stop.status_code == 400 and stop.json["field"] == "type"
    lot = live.post("/api/v1/orders", json={"symbol": "BTC/USDT", "side": "BUY",
                                            "type": "MARKET", "quantity": 0.000015})  # fmt: skip
    assert lot.status_code == 400 and lot.json["rule"] == "lot_size"


# -- orders and fills -----------------------------------------------------------------------------
def test_a_live_order_is_sent_then_filled_partially_and_wholly_into_a_position(live, account, fake):
    session_id = start_live(live, account)
    order = place(live, type="LIMIT", quantity=0.01, price=64000)
    # The engine never works a LIVE order, not even on a paper tick that crosses it.
    record_tick("BTC/USDT", D("60000"))
    process_pending(Rules.current())
    assert Order.get_by_id(order["id"]).accepted_at is None and Trade.select().count() == 0

    run(account)
    remote = on_exchange(fake, order["id"])
    assert remote["price"] == "64000.0" or D(remote["price"]) == 64000
    sent = Order.get_by_id(order["id"])
    assert sent.exchange_order_id == str(remote["orderId"]) and sent.status == "NEW"
    assert live.get(f"/api/v1/orders/{order['id']}").json["order"]["exchange_order_id"] == str(
        remote["orderId"])  # fmt: skip

    fake.fill(remote["orderId"], "0.004", commission="0.05")
    run(account, passes=2)  # a second pass applies nothing twice
    partial = Order.get_by_id(order["id"])
    assert partial.status == "PARTIALLY_FILLED" and partial.executed_quantity == D("0.004")
    trades = list(Trade.select())
    assert len(trades) == 1 and trades[0].price == 64000 and trades[0].commission == D("0.05")
    assert trades[0].exchange == "binance"
    position = Position.get(Position.session == session_id)
    assert position.side == "LONG" and position.quantity == D("0.004")
    assert TradingSession.get_by_id(session_id).cash == D("10000") - D("256") - D("0.05")

    fake.fill(remote["orderId"], "0.006", commission="0.07")
    run(account, passes=2)
    done = Order.get_by_id(order["id"])
    assert done.status == "FILLED" and done.executed_quantity == D("0.01")
    assert done.settled_at is not None and Trade.select().count() == 2
    position = Position.get_by_id(position.id)
    assert position.quantity == D("0.01") and position.fees == D("0.12")

    # Marked to the exchange's own price, whatever the paper market says.
    fake.prices["BTCUSDT"] = D("66000")
    run(account)
    record_tick("BTC/USDT", D("50000"))
    mark_to_market(Rules.current(), sample=False)
    marked = Position.get_by_id(position.id)
    assert marked.mark_price == 66000 and marked.unrealized_pnl == D("20")  # fees aside
    shown = live.get(f"/api/v1/sessions/{session_id}").json
    assert shown["session"]["mode"] == "LIVE" if "session" in shown else shown["mode"] == "LIVE"


def test_a_cancel_goes_to_the_exchange_and_a_fill_before_it_still_counts(live, account, fake):
    start_live(live, account)
    order = place(live, type="LIMIT", quantity=0.01, price=64000)
    run(account)
    remote = on_exchange(fake, order["id"])
    fake.fill(remote["orderId"], "0.004")
    cancelled = live.delete(f"/api/v1/orders/{order['id']}")
    assert cancelled.status_code == 200
    run(account)
    assert fake.orders[remote["orderId"]]["status"] == "CANCELED"
    final = Order.get_by_id(order["id"])
    assert final.status == "CANCELED" and final.executed_quantity == D("0.004")
    assert final.settled_at is not None and Trade.select().count() == 1
    calls = fake.calls("DELETE", "/order")
    run(account, passes=2)
    assert fake.calls("DELETE", "/order") == calls  # settled: never cancelled twice
    assert counted(LIVE_ORDERS, exchange="binance", outcome="sent") >= 1
    assert counted(LIVE_ORDERS, exchange="binance", outcome="cancelled") >= 1


def test_an_exchange_refusal_rejects_the_order_with_its_reason(live, account, fake):
    start_live(live, account)
    fake.balances["USDT"] = D("100")
    order = place(live, type="LIMIT", quantity=0.01, price=64000)
    run(account)
    rejected = Order.get_by_id(order["id"])
    assert rejected.status == "REJECTED" and "insufficient balance" in rejected.error_message
    assert rejected.settled_at is not None


def test_the_risk_limits_apply_before_anything_is_sent(live, account, fake):
    start_live(live, account)
    order = place(live, type="MARKET", quantity=0.05)  # 3,250 USDT: over 20 % of 10,000
    run(account)
    rejected = Order.get_by_id(order["id"])
    assert rejected.status == "REJECTED" and "max_position_size" in rejected.error_message
    assert fake.calls("POST", "/order") == 0


# -- safety ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("switch", ["trade/stop", "trading_mode"])
def test_the_kill_switch_cancels_the_open_exchange_orders(live, account, fake, switch):
    session_id = start_live(live, account)
    held = place(live, type="MARKET", quantity=0.01)
    resting = place(live, type="LIMIT", quantity=0.01, price=60000)
    run(account)
    fake.fill(on_exchange(fake, held["id"])["orderId"], "0.01")
    run(account)
    assert Position.get(Position.session == session_id).status == "OPEN"
    if switch == "trade/stop":
        stopped = live.post("/api/v1/trade/stop", json={"session_id": session_id})
        assert stopped.status_code == 200
        # Holdings stay in the account: a kill switch never sells by itself.
        assert Position.get(Position.session == session_id).status == "OPEN"
        assert D(str(stopped.json["final_capital"])) == TradingSession.get_by_id(
            session_id).final_capital  # fmt: skip
    else:
        assert live.patch("/api/v1/config", json={"trading_mode": "paper"}).status_code == 200
        session = TradingSession.get_by_id(session_id)
        assert session.status == "PAUSED" and session.status_reason.startswith("kill switch")
        assert events("system_status")[-1]["status"] == "kill_switch"
    assert Order.get_by_id(resting["id"]).status == "CANCELED"
    run(account)
    assert fake.open_orders() == []
    if switch == "trading_mode":  # and nothing more is sent while trading_mode is paper
        late = place(live, type="LIMIT", quantity=0.001, price=60000, side="SELL")
        run(account)
        assert Order.get_by_id(late["id"]).status == "REJECTED"
        assert "switched off" in Order.get_by_id(late["id"]).error_message
        assert fake.order_by_client_id(late["id"]) is None


def test_pausing_cancels_only_the_orders_that_add_exposure(live, account, fake):
    session_id = start_holding(live, account, fake)
    adding = place(live, type="LIMIT", quantity=0.01, price=60000)
    reducing = place(live, type="LIMIT", quantity=0.005, price=70000, side="SELL")
    run(account)
    assert live.post("/api/v1/trade/pause", json={"session_id": session_id}).status_code == 200
    assert Order.get_by_id(adding["id"]).status == "CANCELED"
    assert Order.get_by_id(reducing["id"]).status == "NEW"
    run(account)
    assert [o["clientOrderId"] for o in fake.open_orders()] == [reducing["id"]]


def test_a_lost_answer_is_looked_up_and_the_order_never_placed_twice(live, account, fake):
    start_live(live, account)
    fake.drop_next_order_response = True
    order = place(live, type="LIMIT", quantity=0.01, price=64000)
    run(account)  # accepted by the exchange, the answer lost on the way
    unanswered = Order.get_by_id(order["id"])
    assert unanswered.sent_at is not None and unanswered.exchange_order_id is None
    run(account, passes=3)
    assert fake.calls("POST", "/order") == 1
    remote = on_exchange(fake, order["id"])
    assert Order.get_by_id(order["id"]).exchange_order_id == str(remote["orderId"])


def test_an_order_the_exchange_never_took_is_sent_again_once_it_cannot_arrive(
    live, account, fake, monkeypatch
):
    start_live(live, account)
    fake.fail_next("/order", 503)  # refused before the exchange took it
    order = place(live, type="LIMIT", quantity=0.01, price=64000)
    run(account)
    assert fake.orders == {} and Order.get_by_id(order["id"]).sent_at is not None
    run(account)  # looked up: not there, but the request might still arrive; wait
    assert Order.get_by_id(order["id"]).sent_at is not None and fake.orders == {}
    monkeypatch.setattr(sending, "LOST_ANSWER_SECONDS", 0)
    run(account, passes=2)
    assert len(fake.orders) == 1 and on_exchange(fake, order["id"])
    assert Order.get_by_id(order["id"]).exchange_order_id is not None


def test_an_order_waits_while_the_account_cannot_be_read_and_is_never_sent_late(
    live, account, fake
):
    start_live(live, account)
    fake.fail_next("/account", 500)
    account.next_check = 0
    waiting = place(live, type="LIMIT", quantity=0.01, price=64000)
    run(account, passes=2)  # the balance could not be read: nothing is sent
    assert Order.get_by_id(waiting["id"]).status == "NEW" and fake.orders == {}
    account.next_check = 0
    run(account)  # readable again: it goes
    assert on_exchange(fake, waiting["id"])

    fake.down = True
    account.next_check = 0
    run(account)
    late = place(live, type="LIMIT", quantity=0.01, price=64000)
    fake.down = False
    Order.update(placed_at=utcnow() - timedelta(seconds=61)).where(Order.id == late["id"]).execute()
    account.backoff.not_before = 0
    account.next_check = 1e12  # the account reading stays the failed one
    run(account)
    rejected = Order.get_by_id(late["id"])
    assert rejected.status == "REJECTED" and "max_price_age_seconds" in rejected.error_message
    assert fake.order_by_client_id(late["id"]) is None


def test_one_lock_per_exchange_account(settings, fake):
    from app.exchange.process import ExchangeProcess

    first = ExchangeProcess(live_settings(settings, fake))
    same = ExchangeProcess(live_settings(settings, fake))
    other = ExchangeProcess(replace(live_settings(settings, fake), exchange_api_key="another"))
    feed_only = ExchangeProcess(replace(settings, market_feed="ccxt:binance"))
    assert first.key == same.key
    assert len({first.key, other.key, feed_only.key}) == 3


def test_rate_limits_back_off_and_are_reported_once(live, account, fake):
    start_live(live, account)
    fake.fail_next("/ticker/24hr", 429, times=3)
    waits = []
    for _ in range(3):
        run(account)
        waits.append(account.backoff.wait)
    assert waits == [0.2, 0.4, 0.8]
    failing = [e for e in events("error") if "account binance is failing" in e["error"]]
    assert len(failing) == 1
    run(account)
    assert events("system_status")[-1]["status"] == "exchange_recovered"


def test_a_crossed_stop_loss_closes_a_live_position_on_the_exchange(live, account, fake):
    session_id = start_holding(live, account, fake)
    position = Position.get(Position.session == session_id)
    assert position.stop_loss is not None
    # The engine leaves a LIVE position alone, even on a paper tick through its stop-loss.
    record_tick("BTC/USDT", position.stop_loss - 500)
    process_pending(Rules.current())
    assert Position.get_by_id(position.id).status == "OPEN"
    assert Order.select().where(Order.source == "stop_loss").count() == 0
    fake.prices["BTCUSDT"] = position.stop_loss - 100
    run(account, passes=2)
    exits = list(Order.select().where(Order.source == "stop_loss"))
    assert len(exits) == 1 and exits[0].side == "SELL" and exits[0].quantity == D("0.01")
    remote = on_exchange(fake, str(exits[0].id))
    fake.fill(remote["orderId"], "0.01")
    run(account, passes=2)
    assert Position.get_by_id(position.id).status == "CLOSED"
    assert Order.select().where(Order.source == "stop_loss").count() == 1


def test_a_protective_exit_sells_what_the_account_holds_and_a_refused_one_waits_a_minute(
    live, account, fake
):
    session_id = start_holding(live, account, fake)
    position = Position.get(Position.session == session_id)
    fake.balances["BTC"] = D("0.00999")  # the exchange took its buyer's fee in BTC
    fake.refuse_orders = "Account has insufficient balance for requested action."
    fake.prices["BTCUSDT"] = position.take_profit + 100
    run(account, passes=3)
    (refused,) = Order.select().where(Order.source == "take_profit")  # one, not one a poll
    assert refused.status == "REJECTED" and "insufficient balance" in refused.error_message
    assert refused.quantity == D("0.00999")  # what the account holds, not the 0.01 bought
    fake.refuse_orders = None
    Order.update(placed_at=utcnow() - timedelta(seconds=61)).where(
        Order.id == refused.id).execute()  # fmt: skip
    run(account, passes=2)
    (retried,) = Order.select().where(Order.source == "take_profit", Order.id != refused.id)
    assert on_exchange(fake, str(retried.id))["origQty"] == "0.00999"


def test_credentials_are_never_logged_returned_or_published(live, account, fake, caplog):
    caplog.set_level(logging.DEBUG)
    start_live(live, account)
    fake.fail_next("/order", 500)
    place(live, type="LIMIT", quantity=0.01, price=64000)
    run(account, passes=2)
    assert API_KEY in fake.api_keys  # the key was sent to the exchange, and only there
    assert "createOrder" in caplog.text or "create_order" in caplog.text
    shown = [caplog.text, json.dumps(live.get("/api/v1/config").json),
             *(json.dumps(e.data) for e in SystemEvent.select())]  # fmt: skip
    for text in shown:
        assert API_KEY not in text and API_SECRET not in text
        assert "signature=" not in text or "signature=[redacted]" in text


# -- the real processes ---------------------------------------------------------------------------
def test_live_trading_end_to_end_with_the_exchange_and_engine_processes(database_url, fake, live):
    env = {"EXCHANGE_ID": "binance", "EXCHANGE_API_KEY": API_KEY,
           "EXCHANGE_API_SECRET": API_SECRET, "EXCHANGE_URLS": json.dumps(fake.urls),
           "FEED_POLL_SECONDS": "0.2"}  # fmt: skip
    exchange = start_worker(database_url, command="exchange", **env)
    engine = start_worker(database_url, command="worker", **env)
    try:
        body = {"symbol": "BTC/USDT", "initial_capital": 10_000, "mode": "LIVE"}

        def started():
            response = live.post("/api/v1/trade/start", json=body)
            return response if response.status_code == 201 else None

        session_id = wait_until(started, timeout=30).json["session_id"]
        order = place(live, type="LIMIT", quantity=0.01, price=64000)
        remote = wait_until(lambda: fake.order_by_client_id(order["id"]), timeout=30)
        fake.fill(remote["orderId"], "0.004")
        wait_until(lambda: Order.get_by_id(order["id"]).status == "PARTIALLY_FILLED", timeout=30)
        assert Position.get(Position.session == session_id).quantity == D("0.004")
        stopped = live.post("/api/v1/trade/stop", json={"session_id": session_id})
        assert stopped.status_code == 200
        wait_until(lambda: fake.orders[remote["orderId"]]["status"] == "CANCELED", timeout=30)
        wait_until(lambda: Order.get_by_id(order["id"]).settled_at is not None, timeout=30)
        assert fake.calls("POST", "/order") == 1
        assert db.execute_sql("SELECT count(*) FROM exchange_fills").fetchone()[0] == 1
    finally:
        for process in (exchange, engine):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
