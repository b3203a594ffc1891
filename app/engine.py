"""The trading engine process: one active engine per database, the others wait as hot standby."""

from __future__ import annotations

import logging
import os
import signal
import socket
import time

import psycopg2

from app.db import CONNECTION_ERRORS, connect_kwargs, db, init_database
from app.events import publish_error, publish_status
from app.runtime_config import current_config
from app.settings import Settings
from app.trading.feeds import SimulatedFeed, followed_symbols

log = logging.getLogger(__name__)

ENGINE_LOCK_KEY = 727_002
STANDBY_POLL_SECONDS = 1.0


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

    def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None


class Engine:
    """Drives the market feed while it holds the leader lock."""

    def __init__(self, settings: Settings, tick_seconds: float | None = None):
        self.settings = settings
        self.tick_seconds = tick_seconds or float(os.environ.get("FEED_TICK_SECONDS", "1.0"))
        self.feed = (
            SimulatedFeed(
                seed=int(os.environ.get("FEED_SEED", "42")),
                volatility=float(os.environ.get("FEED_VOLATILITY", "0.0005")),
                drift=float(os.environ.get("FEED_DRIFT", "0.0")),
            )
            if settings.market_feed == "simulated"
            else None
        )
        self.stopping = False
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

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
        while not self.stopping and lock.still_held():
            started = time.monotonic()
            try:
                with db.connection_context():
                    self.cycle()
            except CONNECTION_ERRORS as exc:
                log.warning("engine cycle lost the database: %s", exc)
            except Exception as exc:
                # A failing cycle must not kill the engine; it is reported and retried.
                log.exception("engine cycle failed")
                self._report_failure(exc)
            time.sleep(max(0.0, self.tick_seconds - (time.monotonic() - started)))

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

    def cycle(self) -> None:
        """One engine step: new market ticks."""
        if self.feed is not None:
            configured = current_config(self.settings)["trading"]["symbols"]
            self.feed.tick(followed_symbols(configured))
