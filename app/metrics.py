"""Prometheus metrics of the web process, plus what the other processes publish.

- Requests, latency and the event stream: counted per web worker (summed over gunicorn's
  workers through its multiprocess directory).
- Trading gauges and lags: read from PostgreSQL at scrape time, so every web process reports
  the same database truth.
- Engine and agents counters: read from their heartbeat rows (app/process_metrics.py), since
  on a PaaS only the web process is scraped.
"""

from __future__ import annotations

import bisect
import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from app import process_metrics
from app.db import CONNECTION_ERRORS, db
from app.realtime.presence import connected_clients

REQUESTS = Counter(
    "cryptofunk_http_requests_total",
    "HTTP requests served",
    ["method", "endpoint", "status"],
)
LATENCY = Histogram(
    "cryptofunk_http_request_duration_seconds",
    "HTTP request latency by route template and status",
    ["method", "endpoint", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WS_EVENTS = Counter(
    "cryptofunk_ws_events", "Events this process's listener received for its WebSocket clients"
)
WS_DROPPED = Counter(
    "cryptofunk_ws_dropped_clients", "WebSocket clients closed for falling behind (1013)"
)
LISTENER_RECONNECTS = Counter(
    "cryptofunk_listener_reconnects", "Times the event listener reconnected to PostgreSQL"
)


@functools.lru_cache(maxsize=4096)
def request_counter(method: str, endpoint: str, status: int):
    """The request counter of one method, route and status (labels resolved once)."""
    return REQUESTS.labels(method, endpoint, str(status))


@functools.lru_cache(maxsize=4096)
def latency_histogram(method: str, endpoint: str, status: int):
    """The latency histogram of one method, route and status (labels resolved once)."""
    return LATENCY.labels(method, endpoint, str(status))


class RequestStats:
    """Request counts and latencies gathered in memory and written to the Prometheus values in
    batches, each (method, route, status) once a FLUSH_SECONDS.

    In multiprocess mode every write to a value takes a lock, a pid check and an mmap write;
    three of them per request (the counter, the histogram's sum and bucket) cost 5 % of a small
    GET's worker time. Under gevent (the web server) a greenlet flushes a second after the
    first unflushed request; without it (tests, scripts) every request is written at once.
    /metrics flushes its own worker first.
    """

    FLUSH_SECONDS = 1.0

    def __init__(self):
        self.pending: dict[tuple[str, str, int], list[float]] = {}
        self.flush_scheduled = False

    def record(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        key = (method, endpoint, status)
        latencies = self.pending.get(key)
        if latencies is None:
            self.pending[key] = latencies = []
        latencies.append(seconds)
        if not self.flush_scheduled:
            self._schedule()

    def _schedule(self) -> None:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            import gevent

            self.flush_scheduled = True
            gevent.spawn_later(self.FLUSH_SECONDS, self.flush)
        else:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        self.flush_scheduled = False
        for (method, endpoint, status), latencies in pending.items():
            request_counter(method, endpoint, status).inc(len(latencies))
            observe_all(latency_histogram(method, endpoint, status), latencies)


def observe_all(histogram, amounts: list[float]) -> None:
    """``histogram.observe`` of every amount, with one write per bucket and one for the sum.
    (prometheus_client has no batch observe; this uses the child's value objects, as its own
    ``observe`` does. tests/test_operations.py checks the exposition against single observes.)"""
    counts = [0] * len(histogram._upper_bounds)
    for amount in amounts:
        counts[bisect.bisect_left(histogram._upper_bounds, amount)] += 1
    histogram._sum.inc(sum(amounts))
    for index, count in enumerate(counts):
        if count:
            histogram._buckets[index].inc(count)


REQUEST_STATS = RequestStats()


class TradingCollector:
    """Gauges computed at scrape time, so every process reports the same database truth."""

    def collect(self):
        try:
            with db.connection_context():
                orders = db.execute_sql("SELECT status, count(*) FROM orders GROUP BY status")
                order_rows = orders.fetchall()
                sessions = db.execute_sql(
                    "SELECT status, count(*) FROM trading_sessions GROUP BY status"
                ).fetchall()
                positions = db.execute_sql(
                    "SELECT count(*) FROM positions WHERE status = 'OPEN'"
                ).fetchone()[0]
                agents = db.execute_sql(
                    "SELECT status, count(*) FROM agents GROUP BY status"
                ).fetchall()
                lags = db.execute_sql(LAGS_SQL).fetchone()
                clients = connected_clients()
                processes = process_metrics.exported()
        except CONNECTION_ERRORS:
            up = GaugeMetricFamily("cryptofunk_database_up", "Database reachable")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("cryptofunk_database_up", "Database reachable")
        up.add_metric([], 1)
        yield up
        yield _labelled("cryptofunk_orders", "Orders by status", "status", order_rows)
        yield _labelled("cryptofunk_sessions", "Trading sessions by status", "status", sessions)
        open_positions = GaugeMetricFamily("cryptofunk_open_positions", "Open positions")
        open_positions.add_metric([], positions)
        yield open_positions
        yield _labelled("cryptofunk_agents", "Agents by status", "status", agents)
        yield _gauge("cryptofunk_ws_clients", "WebSocket clients connected, all web processes",
                     clients)  # fmt: skip
        yield _gauge(
            "cryptofunk_engine_tick_lag_seconds",
            "Age of the oldest market tick the engine has not processed yet (0: none waiting)",
            lags[0],
        )
        yield _gauge(
            "cryptofunk_order_intake_lag_seconds",
            "Age of the oldest order the engine has not accepted yet (0: none waiting)",
            lags[1],
        )
        yield from processes


LAGS_SQL = """
SELECT COALESCE((SELECT EXTRACT(EPOCH FROM now() - tick_time) FROM market_ticks
                  WHERE processed_at IS NULL ORDER BY id LIMIT 1), 0),
       COALESCE((SELECT EXTRACT(EPOCH FROM now() - placed_at) FROM orders
                  WHERE accepted_at IS NULL AND status = 'NEW' ORDER BY placed_at, id LIMIT 1), 0)
"""


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], float(value or 0))
    return family


def _labelled(name: str, doc: str, label: str, rows) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value, count in rows:
        family.add_metric([value], count)
    return family


class Merged:
    """The families of several collectors, one family per name (two may carry the same
    metric: decisions recorded over the API here and by the agents processes)."""

    def __init__(self, *collectors):
        self.collectors = collectors

    def collect(self):
        merged: dict[str, Metric] = {}
        for collector in self.collectors:
            for family in collector.collect():
                if family.name in merged:
                    merged[family.name].samples.extend(family.samples)
                else:
                    merged[family.name] = family
        return list(merged.values())


def render() -> tuple[bytes, str]:
    """The exposition text; request metrics aggregate over gunicorn workers when multiprocess."""
    REQUEST_STATS.flush()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        local = multiprocess.MultiProcessCollector(None)
    else:
        local = Merged(REQUESTS, LATENCY, WS_EVENTS, WS_DROPPED, LISTENER_RECONNECTS,
                       process_metrics.REGISTRY)  # fmt: skip
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Merged(local, TradingCollector()))
    return generate_latest(registry), CONTENT_TYPE_LATEST
