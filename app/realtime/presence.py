"""Connected WebSocket clients, counted across every web process through the database."""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
from gevent.event import Event

from app.db import CONNECTION_ERRORS, db

log = logging.getLogger(__name__)

# A process refreshes its row every few seconds; rows older than this belong to dead processes.
PRESENCE_TTL_SECONDS = 30
REFRESH_SECONDS = 5.0


def connected_clients() -> int:
    """Clients connected to every live web process."""
    cursor = db.execute_prepared(
        "SELECT COALESCE(SUM(clients), 0) FROM ws_presence "
        "WHERE seen_at > now() - make_interval(secs => %s)",
        (PRESENCE_TTL_SECONDS,),
    )
    return int(cursor.fetchone()[0])


def record_presence(process_id: str, clients: int) -> bool:
    """Write this process's client count; False if it could not be written (retry soon)."""
    try:
        with db.connection_context():
            db.execute_sql(
                "INSERT INTO ws_presence (process_id, clients, seen_at) "
                "VALUES (%s, %s, now()) ON CONFLICT (process_id) "
                "DO UPDATE SET clients = EXCLUDED.clients, seen_at = EXCLUDED.seen_at",
                (process_id, clients),
            )
        return True
    except CONNECTION_ERRORS as exc:
        log.warning("could not record WebSocket presence: %s", exc)
    except Exception:
        # Pool exhaustion (MaxConnectionsExceeded) and the like: log, retry, never die.
        log.exception("could not record WebSocket presence")
    return False


def forget_process(process_id: str) -> None:
    """A process shutting down: its presence row and its clients' connection slots go."""
    try:
        with db.connection_context():
            db.execute_sql("DELETE FROM ws_presence WHERE process_id = %s", (process_id,))
            db.execute_sql("DELETE FROM ws_connections WHERE process_id = %s", (process_id,))
    except CONNECTION_ERRORS:
        log.warning("could not remove the presence row of %s", process_id)


class PresenceRecorder:
    """Keeps this process's ``ws_presence`` row current: at once (at most twice a second) when
    clients come and go, and every few seconds anyway so the row does not look dead."""

    def __init__(self, process_id: str, count_clients: Callable[[], int]):
        self.process_id = process_id
        self.count_clients = count_clients
        self.stopping = False
        self._changed = Event()

    def changed(self) -> None:
        self._changed.set()

    def run_forever(self) -> None:
        while not self.stopping:
            self._changed.wait(timeout=REFRESH_SECONDS)
            self._changed.clear()
            if not record_presence(self.process_id, self.count_clients()):
                self._changed.set()  # retry soon: the count must not go stale
            gevent.sleep(0.5)

    def stop(self) -> None:
        """Stop refreshing and remove the row (and the process's connection slots)."""
        self.stopping = True
        forget_process(self.process_id)
