"""The runtime with real processes: agents beside the engine, fencing, crashes, database trouble."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from decimal import Decimal as D

import psycopg2
import pytest
import requests
from peewee import fn

from app.agents.market_view import bucket_start
from app.db import connect_kwargs, db
from app.leadership import Leadership, Superseded
from app.models import AgentClaim, Decision, MarketTick, Order, Trade, TradingSession, utcnow
from app.runtime_config import update_config
from app.settings import PROJECT_ROOT
from app.trading.market import record_tick
from app.trading.orders import OrderRequest, place_order
from app.trading.sessions import pause_session, resume_session, start_session
from tests.fake_llm import FakeLLM
from tests.live import WebServer, http, live_client, start_worker, wait_until
from tests.test_engine import place_market_orders
from tests.test_orchestrator import CANDLE, uptrend, write_candles


def leader_pid() -> int | None:
    row = db.execute_sql("SELECT holder FROM engine_leader").fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row else None


def filled() -> int:
    return Order.select().where(Order.status == "FILLED").count()


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def assert_no_double_fills_and_cash_consistent(session, trades: int) -> None:
    per_order = (
        Trade.select(Trade.order, fn.COUNT(Trade.id))
        .group_by(Trade.order)
        .having(fn.COUNT(Trade.id) > 1)
    )
    assert list(per_order) == []
    assert Trade.select().count() == trades
    spent = sum((t.quote_quantity + t.commission for t in Trade.select()), D(0))
    assert TradingSession.get_by_id(session.id).cash == session.initial_capital - spent


# -- engine leadership -------------------------------------------------------------------------


def test_a_superseded_engine_cannot_commit(app, database_url):
    old = Leadership(database_url, "old:1", takeover_seconds=10, key=992)
    new = Leadership(database_url, "new:2", takeover_seconds=10, key=992)
    try:
        assert old.try_acquire()
        db.transaction_guard = old.check_epoch
        record_tick("BTC/USDT", D(100))  # its epoch is current: the write commits
        old.release()  # it freezes, its lock is gone, and another engine takes over
        wait_until(new.try_acquire, timeout=10, interval=0.05)
        with pytest.raises(Superseded):
            record_tick("BTC/USDT", D(101))
        assert MarketTick.select().count() == 1
    finally:
        db.transaction_guard = None
        old.release()
        new.release()


def test_a_frozen_engine_is_replaced_and_fenced_off(app, database_url):
    update_config({"max_position_size": 1})
    session = start_session("BTC/USDT", D(1_000_000), "PAPER")
    record_tick("BTC/USDT", D(100))
    first = start_worker(database_url, ENGINE_TAKEOVER_SECONDS=2)
    second = None
    try:
        wait_until(lambda: leader_pid() == first.pid, timeout=20)
        second = start_worker(database_url, ENGINE_TAKEOVER_SECONDS=2)
        place_market_orders(session, 20)
        wait_until(lambda: filled() == 20, timeout=20)
        first.send_signal(signal.SIGSTOP)  # frozen: its connections and its lock stay open
        frozen_at = time.monotonic()
        place_market_orders(session, 30)
        wait_until(lambda: leader_pid() == second.pid, timeout=20)
        wait_until(lambda: filled() == 50, timeout=20)
        assert time.monotonic() - frozen_at < 10
        first.send_signal(signal.SIGCONT)  # the old leader wakes up and must not write
        place_market_orders(session, 30)
        record_tick("BTC/USDT", D(101))
        wait_until(lambda: filled() == 80, timeout=20)
        time.sleep(2)
        assert first.poll() is None, "the old leader lives on as a standby"
        assert leader_pid() == second.pid
        assert_no_double_fills_and_cash_consistent(session, 80)
    finally:
        stop(first, *([second] if second else []))


# -- agents beside the engine ------------------------------------------------------------------


@pytest.fixture
def slow_model():
    server = FakeLLM(delay=3.0)
    yield server
    server.close()


def agent_ready_session(symbol: str = "BTC/USDT"):
    """A session whose agents have a rally of history up to now: the next candle trades."""
    update_config({"max_position_size": 0.5, "min_confidence": 0.55, "max_drawdown": 0.5})
    session = start_session(symbol, D(100_000), "PAPER")
    closes = uptrend()
    write_candles(symbol, closes, start=bucket_start(utcnow(), CANDLE) - timedelta(seconds=800))
    record_tick(symbol, D(repr(round(closes[-1], 2))))
    return session


def start_agents(database_url, model: FakeLLM, **env) -> subprocess.Popen:
    return start_worker(
        database_url,
        "agents",
        LLM_BASE_URL=model.base_url,
        LLM_MODEL="approve-primary",
        LLM_FALLBACK_MODEL="approve-fallback",
        **env,
    )


def test_fills_and_controls_do_not_wait_for_a_model_call(app, database_url, slow_model):
    agent_ready_session("BTC/USDT")
    manual = start_session("ETH/USDT", D(100_000), "PAPER")
    record_tick("ETH/USDT", D(3000))
    engine = start_worker(database_url)
    agents = start_agents(database_url, slow_model)
    try:
        wait_until(lambda: leader_pid() == engine.pid, timeout=20)
        wait_until(lambda: slow_model.in_flight > 0, timeout=30, interval=0.02)
        order = place_order(
            OrderRequest(
                symbol="ETH/USDT", side="BUY", type="MARKET", quantity=D("0.1"),
                session_id=manual.id,
            )
        )  # fmt: skip
        wait_until(lambda: Order.get_by_id(order.id).status == "FILLED", timeout=2, interval=0.02)
        pause_session(manual.id)
        resume_session(manual.id)
        assert slow_model.in_flight > 0, "the fill, pause and resume came while the model thought"
        approval = Decision.select().where(Decision.decision_type == "risk_approval")
        wait_until(lambda: approval.count() == 1, timeout=20)
        assert approval.get().model == "approve-primary"
    finally:
        stop(engine, agents)


def test_a_killed_agents_process_leaves_its_candle_to_another(app, database_url, slow_model):
    session = agent_ready_session()
    first = start_agents(database_url, slow_model, AGENT_LEASE_SECONDS=4)
    second = None
    try:
        wait_until(lambda: slow_model.in_flight > 0, timeout=30, interval=0.02)
        claim = AgentClaim.get(AgentClaim.session == session.id)
        first.kill()  # mid-call: no cleanup, the claim's lease simply runs out
        first.wait()
        second = start_agents(database_url, slow_model, AGENT_LEASE_SECONDS=4)
        decided = Decision.select().where(
            Decision.decision_type == "risk_approval", Decision.candle_at == claim.candle_at
        )
        wait_until(lambda: decided.count() == 1, timeout=30)
        taken = AgentClaim.get(
            AgentClaim.session == session.id, AgentClaim.candle_at == claim.candle_at
        )
        assert taken.attempts == 2
        assert taken.holder.endswith(f":{second.pid}")
        time.sleep(1)
        assert decided.count() == 1
    finally:
        stop(first, *([second] if second else []))


# -- database trouble --------------------------------------------------------------------------


def test_an_exhausted_pool_answers_503_quickly_and_health_stays_200(app, database_url):
    session = start_session("BTC/USDT", D(10_000), "PAPER")
    server = WebServer(database_url, DB_POOL_SIZE=1, DB_POOL_TIMEOUT=1, DB_LOCK_TIMEOUT=4)
    locker = psycopg2.connect(**connect_kwargs(database_url))
    answers = []
    try:
        with locker.cursor() as cursor:  # a long-held row lock, as a stuck writer would leave
            cursor.execute(
                "SELECT id FROM trading_sessions WHERE id = %s FOR UPDATE", (session.id.hex,)
            )
        body = {"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": 0.1}
        waiting = threading.Thread(
            target=lambda: answers.append(
                http.post(server.url("/api/v1/orders"), json=body, timeout=10)
            )
        )
        waiting.start()  # holds the only pooled connection while it waits on the lock
        time.sleep(0.5)
        started = time.monotonic()
        listed = http.get(server.url("/api/v1/orders"), timeout=10)
        assert listed.status_code == 503
        assert listed.json()["error"] == "database busy"
        assert listed.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 2.5
        started = time.monotonic()
        health = http.get(server.url("/health"), timeout=5)
        assert (health.status_code, health.json()["pool"]) == (200, "exhausted")
        assert time.monotonic() - started < 1.0
        waiting.join(timeout=10)
        (placed,) = answers
        assert placed.status_code == 503, placed.text  # the lock timeout, not a 500
        assert placed.json()["error"] == "database busy"
        assert "Retry-After" in placed.headers
        locker.rollback()
        assert http.get(server.url("/api/v1/orders"), timeout=5).status_code == 200
        assert Order.select().count() == 0
    finally:
        locker.close()
        server.stop()


def test_a_database_restart_costs_no_503s_and_events_resume_within_a_second():
    from app.embedded import EmbeddedPostgres

    data_dir = tempfile.mkdtemp(prefix="cfr-", dir="/tmp")
    postgres = EmbeddedPostgres(data_dir, cleanup_mode="stop")
    url = postgres.url("restart")
    # A fresh database: its admin key comes from the environment, as on a PaaS deploy.
    bootstrap = "restart-test-bootstrap-key-of-32-chars+"
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": url, "CRYPTOFUNK_ADMIN_KEY": bootstrap},
        check=True,
        capture_output=True,
    )
    server = WebServer(url, workers=1)
    http = requests.Session()
    http.headers["X-API-Key"] = bootstrap
    try:
        with live_client(server.ws_url, headers={"X-API-Key": bootstrap}) as client:
            client.send("subscribe", {"types": ["system_status"]})
            client.next_of("subscribed")
            # Several pooled connections, all of which the restart will kill.
            threads = [
                threading.Thread(target=http.get, args=(server.url("/api/v1/orders"),))
                for _ in range(6)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            postgres.stop()
            postgres = EmbeddedPostgres(data_dir, cleanup_mode="stop")
            restarted = time.monotonic()
            status = [http.get(server.url("/api/v1/orders")).status_code for _ in range(30)]
            assert status == [200] * 30
            client.next_of("system_status", timeout=5, status="events_reconnected")
            assert time.monotonic() - restarted < 3
    finally:
        server.stop()
        postgres.server.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
