"""What operators rely on: readiness, metrics from every process, request ids and JSON logs,
and a clean SIGTERM in each process."""

from __future__ import annotations

import io
import json
import logging
import signal
import time
from decimal import Decimal

import psycopg2

from app.db import db
from app.logs import RequestContext, json_formatter
from app.models import Order
from app.process_metrics import Heartbeat, count_rejections, exported
from app.trading.market import record_tick
from app.trading.orders import OrderRequest, place_order
from app.trading.sessions import start_session
from tests.live import WebServer, http, start_worker, wait_until


def metric_value(text: str, name: str, **labels) -> float | None:
    """The value of the first sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_ready_needs_the_database_and_the_listener_but_not_the_engine(app, database_url):
    web = WebServer(database_url, workers=1)
    try:
        body = http.get(web.url("/ready"), timeout=5).json()
        assert body == {**body, "status": "ready", "database": "up", "listener": "up",
                        "engine": "none"}  # fmt: skip
        engine = start_worker(database_url)
        try:
            wait_until(lambda: http.get(web.url("/ready"), timeout=5).json()["engine"] == "active")
        finally:
            engine.send_signal(signal.SIGTERM)
            assert engine.wait(timeout=20) == 0
        answer = http.get(web.url("/ready"), timeout=5)
        assert answer.status_code == 200  # the engine's restart keeps the web in rotation
        assert answer.json()["engine"] == "none"
    finally:
        web.stop()


def test_a_standby_engine_is_reported_as_such(app):
    Heartbeat("worker", "host:1").beat("standby", force=True)
    from app.runtime_status import engine_state

    assert engine_state() == "standby"
    Heartbeat("worker", "host:1").beat("stopped", force=True)
    assert engine_state() == "none"


def test_the_web_exports_what_the_engine_counts(app, database_url):
    session = start_session("BTC/USDT", Decimal(10_000), "PAPER")
    record_tick("BTC/USDT", Decimal(100))
    place_order(OrderRequest(symbol="BTC/USDT", side="BUY", type="MARKET", quantity=Decimal(1)))
    # Too big for the session's cash: rejected by the engine for that reason.
    place_order(OrderRequest(symbol="BTC/USDT", side="BUY", type="MARKET", quantity=Decimal(500)))
    web = WebServer(database_url, workers=1)
    engine = start_worker(database_url)
    try:
        wait_until(lambda: Order.select().where(Order.status.in_(["FILLED", "REJECTED"])).count()
                   == 2, timeout=20)  # fmt: skip

        def scraped():
            return http.get(web.url("/metrics"), timeout=5).text

        wait_until(lambda: metric_value(scraped(), "cryptofunk_fills_total", symbol="BTC/USDT"))
        text = scraped()
        assert metric_value(text, "cryptofunk_fills_total", kind="worker") == 1.0
        assert metric_value(text, "cryptofunk_orders_rejected_total",
                            reason="insufficient_cash") == 1.0  # fmt: skip
        assert metric_value(text, "cryptofunk_order_intake_lag_seconds") == 0.0
        assert metric_value(text, "cryptofunk_engine_tick_lag_seconds") == 0.0
        assert metric_value(text, "cryptofunk_ws_clients") == 0.0
        http.get(web.url("/api/v1/orders"), timeout=5)
        text = scraped()
        assert metric_value(
            text, "cryptofunk_http_request_duration_seconds_count",
            endpoint="/api/v1/orders", method="GET", status="200",
        ) >= 1  # fmt: skip
        assert session.id
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=20)
        web.stop()


def test_heartbeat_counters_come_back_labelled_with_their_process(app):
    count_rejections(["max_positions", "max_positions"])
    Heartbeat("worker", "host-a:7").beat("active", force=True)
    [rejected] = [family for family in exported() if family.name == "cryptofunk_orders_rejected"]
    totals = {
        (s.labels["process"], s.labels["reason"]): s.value
        for s in rejected.samples
        if s.name.endswith("_total")
    }
    assert totals[("host-a:7", "max_positions")] >= 2


def test_every_response_carries_a_request_id(client):
    given = client.get("/api/v1/orders", headers={"X-Request-ID": "trace-42.a"})
    assert given.headers["X-Request-ID"] == "trace-42.a"
    made = client.get("/api/v1/orders/not-a-uuid")
    assert made.status_code == 400
    assert len(made.headers["X-Request-ID"]) == 32
    refused = client.get("/api/v1/orders", headers={"X-Request-ID": "bad id\twith spaces"})
    assert refused.headers["X-Request-ID"] != "bad id\twith spaces"


def test_log_lines_are_json_with_the_request_id(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestContext("web"))
    logger = logging.getLogger("tests.operations")
    logger.addHandler(handler)
    try:
        with app.test_request_context("/api/v1/orders"):
            from flask import g

            g.request_id = "req-1"
            logger.warning("inside %s", "a request")
        logger.warning("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["message"] == "inside a request"
    assert (inside["request_id"], inside["process"], inside["level"]) == ("req-1", "web", "WARNING")
    assert inside["logger"] == "tests.operations" and "time" in inside
    assert outside["request_id"] is None


def test_a_live_server_logs_json_lines(app, database_url):
    web = WebServer(database_url, workers=1, LOG_LEVEL="info")
    try:
        http.get(web.url("/api/v1/orders"), timeout=5)
    finally:
        log = web.log()
        web.stop()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)


def test_sigterm_lets_an_in_flight_request_finish(app, database_url):
    session = start_session("BTC/USDT", Decimal(10_000), "PAPER")
    web = WebServer(database_url, workers=1)
    blocker = psycopg2.connect(database_url)
    try:
        with blocker.cursor() as cursor:  # hold the session's row: pausing it has to wait
            cursor.execute("SELECT 1 FROM trading_sessions WHERE id = %s FOR UPDATE",
                           (str(session.id),))  # fmt: skip
        import threading

        answers = []
        request = threading.Thread(
            target=lambda: answers.append(
                http.post(
                    web.url("/api/v1/trade/pause"), json={"session_id": str(session.id)}, timeout=30
                )
            )
        )
        request.start()
        time.sleep(1.0)  # the request is in flight, waiting on the lock
        web.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        blocker.rollback()  # now it can finish
        request.join(timeout=30)
        assert answers and answers[0].status_code == 200, answers
        assert web.process.wait(timeout=20) == 0
    finally:
        blocker.close()
        web.stop()


def test_sigterm_hands_the_engine_lock_over_at_once(app, database_url):
    slow_takeover = {"ENGINE_TAKEOVER_SECONDS": "60"}
    first = start_worker(database_url, **slow_takeover)
    second = None
    try:
        wait_until(lambda: db.execute_sql("SELECT holder FROM engine_leader").fetchone())
        second = start_worker(database_url, **slow_takeover)
        holder = db.execute_sql("SELECT holder FROM engine_leader").fetchone()[0]
        assert holder.endswith(f":{first.pid}")
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
        wait_until(
            lambda: db.execute_sql("SELECT holder FROM engine_leader").fetchone()[0].endswith(
                f":{second.pid}"), timeout=20,
        )  # fmt: skip
        assert time.monotonic() - started < 30  # released, not waited out (60 s)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_sigterm_hands_the_agents_claims_back(app, database_url):
    session = start_session("BTC/USDT", Decimal(10_000), "PAPER")
    agents = start_worker(database_url, command="agents")
    try:
        wait_until(lambda: db.execute_sql(
            "SELECT 1 FROM process_heartbeats WHERE kind = 'agents'").fetchone())  # fmt: skip
        identity = db.execute_sql(
            "SELECT process_id FROM process_heartbeats WHERE kind = 'agents'"
        ).fetchone()[0]
        # A claim of this process, leased for ten minutes, that it has not finished.
        db.execute_sql(
            "INSERT INTO agent_claims (session_id, candle_at, token, holder, lease_until) "
            "VALUES (%s, now(), gen_random_uuid(), %s, now() + interval '10 minutes')",
            (str(session.id), identity),
        )
        agents.send_signal(signal.SIGTERM)
        assert agents.wait(timeout=30) == 0
        expired = db.execute_sql(
            "SELECT lease_until <= now() FROM agent_claims WHERE holder = %s", (identity,)
        ).fetchone()[0]
        assert expired, "the claim was left to run out its lease"
        role = db.execute_sql(
            "SELECT role FROM process_heartbeats WHERE process_id = %s", (identity,)
        ).fetchone()[0]
        assert role == "stopped"
    finally:
        if agents.poll() is None:
            agents.kill()
            agents.wait()


def test_the_grafana_dashboard_uses_only_metrics_the_system_exports(client):
    import re

    from app.settings import PROJECT_ROOT

    dashboard = json.loads((PROJECT_ROOT / "config" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {re.sub(r"_(bucket|total|count|sum)$", "", name)
            for query in queries for name in re.findall(r"cryptofunk_\w+", query)}  # fmt: skip
    text = client.get("/metrics").get_data(as_text=True)
    types = re.findall(r"^# TYPE (cryptofunk_\w+) ", text, re.MULTILINE)
    declared = {re.sub(r"_total$", "", name) for name in types}
    assert used - declared == set()
    assert len(used) >= 15


def test_batched_latencies_expose_exactly_what_single_observations_would():
    from prometheus_client import Histogram

    from app.metrics import LATENCY, observe_all

    buckets = LATENCY._upper_bounds[:-1]  # the web's buckets, +Inf added by the histogram
    one = Histogram("one_at_a_time", "x", buckets=buckets, registry=None)
    batch = Histogram("batched", "x", buckets=buckets, registry=None)
    amounts = [0.0, 0.004, 0.005, 0.0051, 0.2, 0.25, 3.0, 7.5, 0.01, 0.01]
    for amount in amounts:
        one.observe(amount)
    observe_all(batch, amounts)

    def samples(histogram):
        return [(s.name.removeprefix(metric.name), s.labels, s.value)
                for metric in histogram.collect() for s in metric.samples
                if not s.name.endswith("_created")]  # fmt: skip

    assert samples(batch) == samples(one)
