"""Connected WebSocket clients, counted across every web process through the database."""

from __future__ import annotations

from app.db import db

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
