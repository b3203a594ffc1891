"""The trading engine process: one active engine per database, the others wait as hot standby."""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from datetime import timedelta
from decimal import Decimal

import psycopg2

from app.agents.llm import build_gateway
from app.agents.orchestrator import Orchestrator, mark_silent_agents_inactive
from app.agents.outcomes import resolve_outcomes
from app.db import CONNECTION_ERRORS, connect_kwargs, db, init_database
from app.events import publish_error, publish_status
from app.models import MarketTick, utcnow
from app.runtime_config import trading_rules
from app.settings import Settings
from app.trading.feeds import ReplayFeed, SimulatedFeed, followed_symbols
from app.trading.marking import mark_to_market
from app.trading.matching import process_pending
from app.trading.rules import Rules

log = logging.getLogger(__name__)

ENGINE_LOCK_KEY = 727_002
STANDBY_POLL_SECONDS = 1.0
WAKE_CHANNEL = "cryptofunk_engine"
MAX_IDLE_SECONDS = 1.0
TICK_BATCH = 500
PRUNE_INTERVAL_SECONDS = 3600
OUTCOME_INTERVAL_SECONDS = 1.0


class LeaderLock:
    """A PostgreSQL session advisory lock held on its own connection.

    The lock lives exactly as long as that connection, so a crashed engine releases it at once
    and a standby takes over on its next poll.
    """

    def __init__(self, url: str, key: int = ENGINE_LOCK_KEY):
        self.url = url
        self.key = key
        self.conn = None

    def try_acquire(self) -> bool:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg2.connect(**connect_kwargs(self.url))
            self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            return bool(cur.fetchone()[0])

    def still_held(self) -> bool:
        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except psycopg2.Error:
            return False

    def listen(self, channel: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"LISTEN {channel}")

    def wait(self, timeout: float) -> bool:
        """Sleep until a notification or ``timeout``; False if the connection (and lock) died."""
        try:
            readable, _, _ = select.select([self.conn], [], [], timeout)
            self.conn.poll()
            self.conn.notifies.clear()
            if not readable and timeout >= MAX_IDLE_SECONDS:
                return self.still_held()
            return True
        except (psycopg2.Error, OSError):
            return False

    def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None


class Engine:
    """The active engine: feed ticks, match orders, mark positions, sample equity."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.feed = build_feed(settings.market_feed)
        self.stopping = False
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.next_feed_at = 0.0
        self.next_mark_at = 0.0
        self.next_sample_at = 0.0
        self.next_prune_at = 0.0
        self.next_outcome_at = 0.0
        self.orchestrator = Orchestrator(build_gateway(settings))

    def _stop(self, signum, frame):
        self.stopping = True

    def run_forever(self) -> None:
        """Wait for leadership, then run cycles until SIGTERM/SIGINT."""
        init_database(self.settings.database_url, pool_size=2)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        lock = LeaderLock(self.settings.database_url)
        try:
            while not self.stopping:
                try:
                    if not lock.try_acquire():
                        time.sleep(STANDBY_POLL_SECONDS)
                        continue
                    lock.listen(WAKE_CHANNEL)
                except psycopg2.Error as exc:
                    log.warning("database unavailable (%s); retrying", exc)
                    lock.release()
                    time.sleep(STANDBY_POLL_SECONDS)
                    continue
                log.info("engine is active (feed: %s)", self.settings.market_feed)
                self._announce("engine_started", "Trading engine is active")
                self._lead(lock)
                self._announce("engine_stopped", "Trading engine stopped")
                log.info("engine left the active role")
        finally:
            lock.release()
            db.close_all()

    def _lead(self, lock: LeaderLock) -> None:
        while not self.stopping:
            try:
                with db.connection_context():
                    busy = self.cycle()
            except CONNECTION_ERRORS as exc:
                log.warning("engine cycle lost the database: %s", exc)
                busy = False
            except Exception as exc:
                # A failing cycle must not kill the engine; it is reported and retried.
                log.exception("engine cycle failed")
                self._report_failure(exc)
                busy = False
            if busy:
                continue  # more ticks may be waiting: go again at once
            if not lock.wait(self._seconds_until_due()):
                return  # the lock connection is gone, and the lock with it

    def _seconds_until_due(self) -> float:
        now = time.monotonic()
        due = [self.next_mark_at, self.next_sample_at]
        if self.feed is not None:
            due.append(self.next_feed_at)
        return max(0.0, min(min(due) - now, MAX_IDLE_SECONDS))

    def cycle(self) -> bool:
        """One engine step; True when it hit its batch limit and should run again at once."""
        now = time.monotonic()
        config = trading_rules()  # once per cycle: every step below reads this same document
        if self.feed is not None and now >= self.next_feed_at:
            self.next_feed_at = now + self.feed.interval
            agents = config["agents"]
            self.feed.history_seconds = int(agents["candle_seconds"]) * int(
                agents["lookback_candles"]
            )
            with db.atomic():
                self.feed.tick(followed_symbols(config["trading"]["symbols"]))
        rules = Rules.from_config(config)
        handled = process_pending(rules, max_ticks=TICK_BATCH)
        exchange = config["exchange"]
        if now >= self.next_mark_at:
            self.next_mark_at = now + float(exchange["mark_interval_seconds"])
            sample = now >= self.next_sample_at
            if sample:
                self.next_sample_at = now + float(exchange["equity_sample_seconds"])
            mark_to_market(rules, sample)
        self.run_agents(now, config)
        if now >= self.next_prune_at:
            self.next_prune_at = now + PRUNE_INTERVAL_SECONDS
            prune_ticks()
        return handled >= TICK_BATCH

    def run_agents(self, now: float, config: dict) -> None:
        """Agents decide on closed candles; outcomes are judged; silent agents go inactive."""
        self.orchestrator.run(config=config)
        if now >= self.next_outcome_at:
            self.next_outcome_at = now + OUTCOME_INTERVAL_SECONDS
            resolve_outcomes(Decimal(str(config["agents"]["hold_band"])))
            mark_silent_agents_inactive()

    def _announce(self, status: str, message: str) -> None:
        try:
            with db.connection_context():
                publish_status(
                    status, message, feed=self.settings.market_feed, process=self.identity
                )
        except CONNECTION_ERRORS as exc:
            log.warning("could not publish %s: %s", status, exc)

    def _report_failure(self, exc: Exception) -> None:
        try:
            with db.connection_context():
                publish_error(
                    "Engine cycle failed", f"{type(exc).__name__}: {exc}", process=self.identity
                )
        except CONNECTION_ERRORS:
            log.warning("could not publish the engine failure")


def build_feed(name: str):
    """The market feed the engine drives itself (manual ticks arrive through the API)."""
    if name == "simulated":
        return SimulatedFeed(
            interval=float(os.environ.get("FEED_TICK_SECONDS", "1.0")),
            seed=int(os.environ.get("FEED_SEED", "42")),
            volatility=float(os.environ.get("FEED_VOLATILITY", "0.0005")),
            drift=float(os.environ.get("FEED_DRIFT", "0.0")),
        )
    if name == "replay":
        return ReplayFeed.from_env()
    return None


def prune_ticks() -> int:
    """Drop processed ticks older than the retention period (TICK_RETENTION_DAYS, default 7)."""
    days = int(os.environ.get("TICK_RETENTION_DAYS", "7"))
    return (
        MarketTick.delete()
        .where(
            MarketTick.processed_at.is_null(False),
            MarketTick.tick_time < utcnow() - timedelta(days=days),
        )
        .execute()
    )
