"""WebSocket connections per key, counted across every worker and host in the database."""

from __future__ import annotations

import uuid

from app.db import db
from app.realtime.presence import PRESENCE_TTL_SECONDS

# Rows of processes whose presence went stale (killed without a goodbye) no longer count.
_FORGET_DEAD = (
    "DELETE FROM ws_connections c WHERE c.key_name = %s AND EXISTS ("
    " SELECT 1 FROM ws_presence p WHERE p.process_id = c.process_id"
    " AND p.seen_at < now() - make_interval(secs => %s))"
)


def open_connections(key_name: str) -> int:
    """Connections the key holds on every live web process."""
    cursor = db.execute_sql("SELECT count(*) FROM ws_connections WHERE key_name = %s", (key_name,))
    return int(cursor.fetchone()[0])


def reserve(key_name: str, process_id: str, limit: int) -> tuple[str | None, int]:
    """Take one of the key's ``limit`` connection slots: (slot id, or None when all are taken;
    connections held before this one)."""
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtext('ws:' || %s))", (key_name,))
        db.execute_sql(_FORGET_DEAD, (key_name, PRESENCE_TTL_SECONDS))
        held = open_connections(key_name)
        if held >= limit:
            return None, held
        slot = str(uuid.uuid4())
        db.execute_sql(
            "INSERT INTO ws_connections (id, key_name, process_id) VALUES (%s, %s, %s)",
            (slot, key_name, process_id),
        )
    return slot, held


def release(slot: str) -> None:
    """Give a slot back when its connection ends."""
    db.execute_sql("DELETE FROM ws_connections WHERE id = %s", (slot,))
