"""The trading engine process: one active engine per database, the others wait as hot standby.

The engine drives the feed, matches orders, marks positions and samples equity. It talks to
nothing but PostgreSQL: agents run in their own processes (app/agents/runner.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from datetime import timedelta

from app.db import CONNECTION_ERRORS, db, init_database
from app.events import publish_error, publish_status
from app.leadership import Leadership, Superseded, application_name, run_guarded
from app.models import MarketTick, utcnow
from app.process_metrics import Heartbeat
from app.runtime_config import trading_rules
from app.settings import Settings
from app.trading.feeds import ReplayFeed, SimulatedFeed, followed_symbols
from app.trading.marking import mark_to_market
from app.trading.matching import process_pending
from app.trading.rules import Rules

log = logging.getLogger(__name__)

STANDBY_POLL_SECONDS = 1.0
WAKE_CHANNEL = "cryptofunk_engine"
MAX_IDLE_SECONDS = 1.0
TICK_BATCH = 500
PRUNE_INTERVAL_SECONDS = 3600
RETRY_AFTER_FAILURE_SECONDS = 0.5


class Engine:
    """The active engine: feed ticks, match orders, mark positions, sample equity."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.feed = build_feed(settings)
        self.stopping = False
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("worker", self.identity)
        self.next_feed_at = 0.0
        self.next_mark_at = 0.0
        self.next_sample_at = 0.0
        self.next_prune_at = 0.0

    def _stop(self, signum, frame):
        self.stopping = True

    def run_forever(self) -> None:
        """Wait for leadership, then run cycles until SIGTERM/SIGINT."""
        # Every connection carries the engine's name, so a standby can fence this one off.
        init_database(
            self.settings.database_url,
            pool_size=2,
            application_name=application_name(self.identity),
            prepare_statements=self.settings.db_prepared_statements,
        )
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        leadership = Leadership(
            self.settings.database_url, self.identity, self.settings.engine_takeover_seconds
        )
        try:
            while leadership.acquire_or_wait(
                lambda: self.stopping,
                lambda: self.heartbeat.beat("standby"),
                STANDBY_POLL_SECONDS,
                channel=WAKE_CHANNEL,
            ):
                log.info(
                    "engine is active (feed: %s, epoch %s)",
                    self.settings.market_feed,
                    leadership.epoch,
                )
                db.transaction_guard = leadership.check_epoch
                self._announce("engine_started", "Trading engine is active", leadership.epoch)
                self._lead(leadership)
                db.transaction_guard = None
                self._announce("engine_stopped", "Trading engine stopped", leadership.epoch)
                leadership.release()
                db.close_all()
                log.info("engine left the active role")
        finally:
            db.transaction_guard = None
            leadership.release()  # a standby takes over at once, not after the takeover time
            self.heartbeat.beat("stopped", force=True)
            db.close_all()

    def _lead(self, leadership: Leadership) -> None:
        while not self.stopping:
            self.heartbeat.beat("active")
            if not leadership.heartbeat():
                log.warning("engine lost its leadership (epoch %s)", leadership.epoch)
                return
            leading, busy = run_guarded(
                self._connected_cycle, "engine", RETRY_AFTER_FAILURE_SECONDS, self._report_failure
            )
            if not leading:
                return
            if busy:
                continue  # more ticks or orders may be waiting: go again at once
            if not leadership.wait(self._seconds_until_due()):
                return  # the lock connection is gone, and the lock with it

    def _connected_cycle(self) -> bool:
        with db.connection_context():
            return self.cycle()

    def _seconds_until_due(self) -> float:
        now = time.monotonic()
        due = [self.next_mark_at, self.next_sample_at]
        if self.feed is not None:
            due.append(self.next_feed_at)
        return max(0.0, min(min(due) - now, MAX_IDLE_SECONDS))

    def cycle(self) -> bool:
        """One engine step; True when it hit a batch limit and should run again at once."""
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
        if now >= self.next_prune_at:
            self.next_prune_at = now + PRUNE_INTERVAL_SECONDS
            prune_ticks(self.settings.tick_retention_days)
        return handled >= TICK_BATCH or time.monotonic() - now > MAX_IDLE_SECONDS / 4

    def _announce(self, status: str, message: str, epoch: int | None) -> None:
        try:
            with db.connection_context():
                publish_status(
                    status,
                    message,
                    feed=self.settings.market_feed,
                    process=self.identity,
                    epoch=epoch,
                )
        except (*CONNECTION_ERRORS, Superseded) as exc:
            log.warning("could not publish %s: %s", status, exc)

    def _report_failure(self, exc: Exception) -> None:
        try:
            with db.connection_context():
                publish_error(
                    "Engine cycle failed", f"{type(exc).__name__}: {exc}", process=self.identity
                )
        except Exception:
            log.warning("could not publish the engine failure")


def build_feed(settings: Settings):
    """The market feed the engine drives itself (manual ticks arrive through the API)."""
    if settings.market_feed == "simulated":
        return SimulatedFeed(
            interval=settings.feed_tick_seconds,
            seed=settings.feed_seed,
            volatility=settings.feed_volatility,
            drift=settings.feed_drift,
        )
    if settings.market_feed == "replay":
        return ReplayFeed.from_settings(settings)
    return None


def prune_ticks(retention_days: int = 7) -> int:
    """Drop processed ticks older than the retention period (TICK_RETENTION_DAYS)."""
    return (
        MarketTick.delete()
        .where(
            MarketTick.processed_at.is_null(False),
            MarketTick.tick_time < utcnow() - timedelta(days=retention_days),
        )
        .execute()
    )
