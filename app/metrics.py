"""Prometheus metrics: request counters per process, trading gauges read from PostgreSQL."""

from __future__ import annotations

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
from prometheus_client.core import GaugeMetricFamily

from app.db import CONNECTION_ERRORS, db

REQUESTS = Counter(
    "cryptofunk_http_requests_total",
    "HTTP requests served",
    ["method", "endpoint", "status"],
)
LATENCY = Histogram(
    "cryptofunk_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@functools.lru_cache(maxsize=4096)
def request_counter(method: str, endpoint: str, status: int):
    """The request counter of one method, route and status (labels resolved once)."""
    return REQUESTS.labels(method, endpoint, str(status))


@functools.lru_cache(maxsize=4096)
def latency_histogram(method: str, endpoint: str):
    """The latency histogram of one method and route (labels resolved once)."""
    return LATENCY.labels(method, endpoint)


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


def _labelled(name: str, doc: str, label: str, rows) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value, count in rows:
        family.add_metric([value], count)
    return family


def render() -> tuple[bytes, str]:
    """The exposition text; request metrics aggregate over gunicorn workers when multiprocess."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REQUESTS)
        registry.register(LATENCY)
    registry.register(TradingCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST
