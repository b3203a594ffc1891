"""The agents process (``python -m app agents``): decides candles, judges outcomes.

On SIGTERM it finishes the decisions under way, hands its other claims back and exits.

Any number of these run beside one engine, on any hosts. Each loop claims due candles up to its
free concurrency (AGENT_CONCURRENCY) and decides them on worker threads, so one slow model call
never holds up another session; and whichever process leases the maintenance job for the
interval judges decision outcomes and marks silent agents inactive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from decimal import Decimal

from app.agents.claims import hold_job, lease_job, release_all
from app.agents.embeddings import EmbeddingSweep, build_embedder
from app.agents.llm import build_gateway
from app.agents.orchestrator import Orchestrator
from app.agents.outcomes import resolve_outcomes
from app.agents.registry import mark_silent_agents_inactive
from app.db import CONNECTION_ERRORS, db, init_database
from app.process_metrics import Heartbeat
from app.runtime_config import trading_rules
from app.settings import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAINTENANCE_SECONDS = 1.0
RETRY_AFTER_FAILURE_SECONDS = 1.0
AGENTS_NICENESS = 10
EMBEDDING_TIMEOUT_SECONDS = 20.0
# Longer than one call to the embeddings endpoint, so no other process takes the job mid-call.
EMBEDDING_LEASE_SECONDS = EMBEDDING_TIMEOUT_SECONDS + 10


class AgentsProcess:
    """Loops until SIGTERM: claim and decide candles, run the maintenance job when leased."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self.heartbeat = Heartbeat("agents", self.identity)
        self.stopping = False
        self.orchestrator = Orchestrator(
            build_gateway(settings),
            holder=self.identity,
            concurrency=settings.agent_concurrency,
            lease_seconds=settings.agent_lease_seconds,
            market_exchange=settings.feed_exchange,
        )
        embedder = build_embedder(settings, EMBEDDING_TIMEOUT_SECONDS)
        self.embedding_sweep = EmbeddingSweep(embedder) if embedder else None

    def _stop(self, signum, frame):
        self.stopping = True

    def run_forever(self) -> None:
        # Computing indicators for many sessions at a candle boundary is CPU-heavy; on a small
        # host the exchange's fills must not queue behind it.
        with contextlib.suppress(OSError):
            os.nice(AGENTS_NICENESS)
        # One connection per decision thread, plus the loop's own.
        init_database(
            self.settings.database_url,
            pool_size=self.settings.agent_concurrency + 2,
            prepare_statements=self.settings.db_prepared_statements,
        )
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info(
            "agents process %s started (concurrency %s, lease %ss)",
            self.identity,
            self.settings.agent_concurrency,
            self.settings.agent_lease_seconds,
        )
        try:
            while not self.stopping:
                self.heartbeat.beat("running")
                try:
                    self.step()
                except Exception:
                    # Whatever failed (the database, a bug), the loop survives and tries again.
                    log.exception("agents loop failed; retrying")
                    db.discard_broken()
                    time.sleep(RETRY_AFTER_FAILURE_SECONDS)
                    continue
                time.sleep(POLL_SECONDS)
        finally:
            # Decisions under way are finished; claims not started are handed back at once,
            # so another agents process takes them over without waiting out the lease.
            self.orchestrator.close()
            self._release_claims()
            self.heartbeat.beat("stopped", force=True)
            db.close_all()
            log.info("agents process %s stopped", self.identity)

    def _release_claims(self) -> None:
        try:
            with db.connection_context():
                released = release_all(self.identity)
            if released:
                log.info("released %s unfinished claims", released)
        except CONNECTION_ERRORS as exc:
            log.warning("could not release the claims (they expire with their lease): %s", exc)

    def step(self) -> None:
        with db.connection_context():
            config = trading_rules()
        self.orchestrator.dispatch(config=config)
        with db.connection_context():
            if lease_job("maintenance", self.identity, MAINTENANCE_SECONDS):
                resolve_outcomes(Decimal(str(config["agents"]["hold_band"])))
                mark_silent_agents_inactive()
        if self.embedding_sweep is not None:
            with db.connection_context():
                holding = hold_job("embed_decisions", self.identity, EMBEDDING_LEASE_SECONDS)
            if holding:
                self.embedding_sweep.run_if_due()
