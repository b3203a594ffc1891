"""Counters of the engine, agents and exchange processes, published through the database.

On a PaaS only the web process can be scraped. Each engine and agents process therefore keeps
its counters in a registry of its own and writes them, every few seconds, into its row of
``process_heartbeats``; the web's ``/metrics`` exports every recent row, labelled with the
process. The row also says what the process is doing (an engine: active or standby), which
``GET /ready`` reports.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric

from app.db import CONNECTION_ERRORS, db
from app.models import utcnow

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
FILLS = Counter("cryptofunk_fills", "Fills (trades) the engine executed", ["symbol"],
                registry=REGISTRY)  # fmt: skip
REJECTED = Counter("cryptofunk_orders_rejected", "Orders the engine rejected, by reason",
                   ["reason"], registry=REGISTRY)  # fmt: skip
LLM_CALLS = Counter("cryptofunk_llm_calls", "LLM calls", ["model"], registry=REGISTRY)
LLM_ERRORS = Counter("cryptofunk_llm_errors", "LLM calls that failed", ["model", "kind"],
                     registry=REGISTRY)  # fmt: skip
LLM_LATENCY = Histogram(
    "cryptofunk_llm_latency_seconds", "LLM call latency", ["model"], registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
LLM_COST = Counter("cryptofunk_llm_cost_usd", "LLM cost in US dollars", ["model"],
                   registry=REGISTRY)  # fmt: skip
DECISIONS = Counter("cryptofunk_agent_decisions", "Decisions recorded, by agent and decision",
                    ["agent", "decision"], registry=REGISTRY)  # fmt: skip
OUTCOMES = Counter("cryptofunk_agent_decision_outcomes",
                   "Decisions judged, by agent and outcome", ["agent", "outcome"],
                   registry=REGISTRY)  # fmt: skip
FEED_TICKS = Counter("cryptofunk_feed_ticks", "Ticks an exchange feed wrote, by exchange",
                     ["exchange"], registry=REGISTRY)  # fmt: skip
FEED_FAILURES = Counter("cryptofunk_feed_failures",
                        "Polls of an exchange feed that failed, by exchange and error",
                        ["exchange", "error"], registry=REGISTRY)  # fmt: skip
LIVE_ORDERS = Counter("cryptofunk_live_orders",
                      "LIVE orders by what became of them on the way to the exchange: sent, "
                      "refused (by the exchange), rejected (before sending), unanswered, "
                      "cancelled", ["exchange", "outcome"], registry=REGISTRY)  # fmt: skip

HEARTBEAT_SECONDS = 5.0
# A row not refreshed for this long belongs to a process that is gone (killed, or its host).
ALIVE_SECONDS = 30.0
# Rows of processes gone for longer are removed; until then their last counters are exported.
KEEP_SECONDS = 3600.0


def count_fills(symbols: Iterable[str]) -> None:
    for symbol, fills in Tally(symbols).items():
        FILLS.labels(symbol).inc(fills)


def count_rejections(reasons: Iterable[str]) -> None:
    for reason, rejected in Tally(reasons).items():
        REJECTED.labels(reason).inc(rejected)


def serialized(registry: CollectorRegistry = REGISTRY) -> list[dict]:
    """The registry's samples as JSON-ready families (what a scrape of it would show)."""
    families = []
    for family in registry.collect():
        samples = [[s.name, s.labels, s.value] for s in family.samples if s.value == s.value]
        if samples:
            families.append({"name": family.name, "type": family.type,
                             "help": family.documentation, "samples": samples})  # fmt: skip
    return families


class Heartbeat:
    """One process's row: refreshed by :meth:`beat` at most every ``HEARTBEAT_SECONDS``."""

    def __init__(self, kind: str, identity: str | None = None):
        self.kind = kind
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = utcnow()
        self.next_beat = 0.0

    def beat(self, role: str, *, force: bool = False) -> None:
        """Write the row (role and counters) if it is due; database trouble is only logged."""
        now = time.monotonic()
        if not force and now < self.next_beat:
            return
        self.next_beat = now + HEARTBEAT_SECONDS
        try:
            with db.connection_context():
                db.execute_sql(
                    "INSERT INTO process_heartbeats (process_id, kind, role, started_at, beat_at,"
                    " metrics) VALUES (%s, %s, %s, %s, now(), %s) ON CONFLICT (process_id) DO "
                    "UPDATE SET role = EXCLUDED.role, beat_at = now(), metrics = EXCLUDED.metrics",
                    (self.identity, self.kind, role, self.started_at, json.dumps(serialized())),
                )
                db.execute_sql(
                    "DELETE FROM process_heartbeats WHERE beat_at < now() - make_interval(secs"
                    " => %s)",
                    (KEEP_SECONDS,),
                )
        except CONNECTION_ERRORS as exc:
            log.warning("could not write the heartbeat of %s: %s", self.identity, exc)


def alive_roles(kind: str) -> dict[str, str]:
    """Process id → role of the processes of ``kind`` heard from within ``ALIVE_SECONDS``."""
    rows = db.execute_sql(
        "SELECT process_id, role FROM process_heartbeats WHERE kind = %s AND beat_at > now() - "
        "make_interval(secs => %s)",
        (kind, ALIVE_SECONDS),
    ).fetchall()
    return dict(rows)


def exported() -> list[Metric]:
    """Every stored process's counters as metric families, each sample labelled with its
    ``process`` (host:pid) and ``kind``: counters restart with a process, as Prometheus
    expects of a series."""
    rows = db.execute_sql(
        "SELECT process_id, kind, metrics FROM process_heartbeats ORDER BY process_id"
    ).fetchall()
    merged: dict[str, Metric] = {}
    for process_id, kind, families in rows:
        for family in families:
            name = family["name"]
            metric = merged.get(name)
            if metric is None:
                metric = merged[name] = Metric(name, family["help"], family["type"])
            for sample_name, labels, value in family["samples"]:
                metric.add_sample(sample_name, {**labels, "process": process_id, "kind": kind},
                                  value)  # fmt: skip
    return list(merged.values())
