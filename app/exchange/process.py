"""The exchange process (``python -m app exchange``): every network call to an exchange.

The engine talks to nothing but PostgreSQL. This process polls the exchange named by
MARKET_FEED=ccxt:<exchange> and writes what it sees as market ticks (app/exchange/feed.py), and
with LIVE credentials (EXCHANGE_ID and its keys) it sends LIVE orders and cancels and turns the
exchange's fills into trades (app/exchange/account.py). One process leads per exchange account,
like the engine: an advisory lock with a heartbeat and a fencing epoch (app/leadership.py), and
any number of standbys take over when it stops. With neither configured it has nothing to do
and says so, idling until SIGTERM (a Procfile process that exits would only be restarted).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time

from app.db import db, init_database
from app.exchange.account import LiveAccount
from app.exchange.connect import build_client
from app.exchange.feed import CcxtFeed
from app.leadership import Leadership, application_name, run_guarded
from app.process_metrics import Heartbeat
from app.runtime_config import trading_rules
from app.settings import Settings
from app.trading.feeds import followed_symbols

log = logging.getLogger(__name__)

STANDBY_POLL_SECONDS = 1.0
RETRY_AFTER_FAILURE_SECONDS = 1.0
# How often a LIVE account looks for new orders and cancels to send (a cheap indexed query).
ORDER_PASS_SECONDS = 0.2


def lock_key(exchange_id: str, account: str | None) -> int:
    """The advisory-lock key (and leader row) of one exchange account; the public feed of an
    exchange counts as an account of its own."""
    material = f"exchange:{exchange_id}:{account or 'public'}".encode()
    # Positive, within int4, and away from the engine's and the migrations' keys.
    return 1_000_000 + int.from_bytes(hashlib.sha256(material).digest()[:4]) % 1_000_000_000


def account_of(settings: Settings) -> str | None:
    """A fingerprint of the LIVE account's key (never the key itself), or None."""
    if not settings.live_exchange:
        return None
    return hashlib.sha256(settings.exchange_api_key.encode()).hexdigest()[:16]


class ExchangeProcess:
    """Leads one exchange account (or waits as standby) and polls its feed until SIGTERM."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.exchange_id = settings.feed_exchange or settings.live_exchange
        self.identity = f"exchange:{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("exchange", self.identity)
        self.stopping = False
        self.feed: CcxtFeed | None = None
        self.account: LiveAccount | None = None
        self.next_feed_at = 0.0

    def _stop(self, signum, frame):
        self.stopping = True

    def run_forever(self) -> None:
        init_database(self.settings.database_url, pool_size=2,
                      application_name=application_name(self.identity),
                      prepare_statements=self.settings.db_prepared_statements)  # fmt: skip
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            if not self.settings.runs_exchange_process:
                self._idle()
                return
            poll = self.settings.feed_poll_seconds
            if self.settings.feed_exchange:
                self.feed = CcxtFeed(build_client(self.settings.feed_exchange, self.settings), poll)
            if self.settings.live_exchange:
                client = build_client(self.settings.live_exchange, self.settings, credentials=True)
                self.account = LiveAccount(client, poll)
            self._lead_or_wait()
        finally:
            db.transaction_guard = None
            self.heartbeat.beat("stopped", force=True)
            db.close_all()
            log.info("exchange process %s stopped", self.identity)

    def _idle(self) -> None:
        log.info("exchange process %s: no ccxt feed (MARKET_FEED=ccxt:<exchange>) and no LIVE "
                 "account (EXCHANGE_ID and its keys) configured; idle", self.identity)  # fmt: skip
        while not self.stopping:
            self.heartbeat.beat("idle")
            time.sleep(STANDBY_POLL_SECONDS)

    @property
    def key(self) -> int:
        """The lock of what this process does: the feed's exchange and the LIVE account."""
        exchanges = "+".join(filter(None, (self.settings.feed_exchange,
                                           self.settings.live_exchange)))  # fmt: skip
        return lock_key(exchanges, account_of(self.settings))

    def _lead_or_wait(self) -> None:
        leadership = Leadership(self.settings.database_url, self.identity,
                                self.settings.engine_takeover_seconds,
                                key=self.key)  # fmt: skip
        try:
            while leadership.acquire_or_wait(
                lambda: self.stopping,
                lambda: self.heartbeat.beat("standby"),
                STANDBY_POLL_SECONDS,
            ):
                log.info("exchange process leads %s (epoch %s)", self.exchange_id,
                         leadership.epoch)  # fmt: skip
                db.transaction_guard = leadership.check_epoch
                self._lead(leadership)
                db.transaction_guard = None
                leadership.release()
                db.close_all()
        finally:
            leadership.release()

    def _lead(self, leadership: Leadership) -> None:
        while not self.stopping:
            self.heartbeat.beat("active")
            if not leadership.heartbeat():
                log.warning("exchange process lost its leadership")
                return
            leading, _ = run_guarded(self.cycle, "exchange process", RETRY_AFTER_FAILURE_SECONDS)
            if not leading:
                return
            time.sleep(ORDER_PASS_SECONDS if self.account else self.feed.interval)

    def cycle(self) -> int:
        """One pass: the feed's poll when due, the LIVE account's orders; the work done."""
        done = 0
        if self.feed is not None and time.monotonic() >= self.next_feed_at:
            self.next_feed_at = time.monotonic() + self.feed.interval
            with db.connection_context():
                config = trading_rules()
                symbols = followed_symbols(config["trading"]["symbols"])
            agents = config["agents"]
            done += self.feed.poll(
                symbols, int(agents["candle_seconds"]), int(agents["lookback_candles"])
            )
        if self.account is not None:
            done += self.account.cycle()
        return done
