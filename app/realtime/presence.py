"""Connected WebSocket clients, counted across every web process through the database."""

from __future__ import annotations

import logging

from app.db import CONNECTION_ERRORS, db

log = logging.getLogger(__name__)

# A process refreshes its row every few seconds; rows older than this belong to dead processes.
PRESENCE_TTL_SECONDS = 30


def connected_clients() -> int:
    """Clients connected to every live web process."""
    cursor = db.execute_sql(
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
