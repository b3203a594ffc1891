"""The exchange process (``python -m app exchange``): every network call to an exchange.

The engine talks to nothing but PostgreSQL; this process polls the exchange named by
MARKET_FEED=ccxt:<exchange> and writes what it sees as market ticks (app/exchange/feed.py).
One process leads per exchange account, like the engine: an advisory lock with a heartbeat and
a fencing epoch (app/leadership.py), and any number of standbys take over when it stops. With
no ccxt feed configured it has nothing to do and says so, idling until SIGTERM (a Procfile
process that exits would only be restarted).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time

from app.db import CONNECTION_ERRORS, db, init_database
from app.exchange.connect import build_client
from app.exchange.feed import CcxtFeed
from app.leadership import Leadership, Superseded, application_name
from app.process_metrics import Heartbeat
from app.runtime_config import trading_rules
from app.settings import Settings
from app.trading.feeds import followed_symbols

log = logging.getLogger(__name__)

STANDBY_POLL_SECONDS = 1.0
RETRY_AFTER_FAILURE_SECONDS = 1.0


def lock_key(exchange_id: str, account: str | None) -> int:
    """The advisory-lock key (and leader row) of one exchange account; the public feed of an
    exchange counts as an account of its own."""
    material = f"exchange:{exchange_id}:{account or 'public'}".encode()
    # Positive, within int4, and away from the engine's and the migrations' keys.
    return 1_000_000 + int.from_bytes(hashlib.sha256(material).digest()[:4]) % 1_000_000_000


class ExchangeProcess:
    """Leads one exchange account (or waits as standby) and polls its feed until SIGTERM."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.exchange_id = settings.feed_exchange
        self.identity = f"exchange:{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("exchange", self.identity)
        self.stopping = False
        self.feed: CcxtFeed | None = None

    def _stop(self, signum, frame):
        self.stopping = True

    def run_forever(self) -> None:
        init_database(self.settings.database_url, pool_size=2,
                      application_name=application_name(self.identity))  # fmt: skip
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        try:
            if self.exchange_id is None:
                self._idle()
                return
            self.feed = CcxtFeed(
                build_client(self.exchange_id, self.settings), self.settings.feed_poll_seconds
            )
            self._lead_or_wait()
        finally:
            db.transaction_guard = None
            self.heartbeat.beat("stopped", force=True)
            db.close_all()
            log.info("exchange process %s stopped", self.identity)

    def _idle(self) -> None:
        log.info("exchange process %s: no ccxt feed configured (MARKET_FEED=ccxt:<exchange>); "
                 "idle", self.identity)  # fmt: skip
        while not self.stopping:
            self.heartbeat.beat("idle")
            time.sleep(STANDBY_POLL_SECONDS)

    def _lead_or_wait(self) -> None:
        leadership = Leadership(self.settings.database_url, self.identity,
                                self.settings.engine_takeover_seconds,
                                key=lock_key(self.exchange_id, None))  # fmt: skip
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
            try:
                self.cycle()
            except Superseded as exc:
                log.warning("exchange process was superseded: %s", exc)
                return
            except CONNECTION_ERRORS as exc:
                log.warning("exchange cycle lost the database: %s", exc)
                db.discard_broken()
            except Exception:
                log.exception("exchange cycle failed; retrying")
                time.sleep(RETRY_AFTER_FAILURE_SECONDS)
            time.sleep(self.feed.interval)

    def cycle(self) -> int:
        """One poll of the feed; how many ticks it wrote."""
        with db.connection_context():
            config = trading_rules()
            symbols = followed_symbols(config["trading"]["symbols"])
        agents = config["agents"]
        return self.feed.poll(
            symbols, int(agents["candle_seconds"]), int(agents["lookback_candles"])
        )
