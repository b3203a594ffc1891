"""Ordered SQL migrations in this folder, applied once each under an advisory lock."""

from __future__ import annotations

import logging
from pathlib import Path

from app.db import db

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Any constant works; it only has to differ from the engine's lock key.
MIGRATION_LOCK_KEY = 727_001


def available() -> list[tuple[str, Path]]:
    """Migration files as (version, path), in the order they must run."""
    files = sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
    return [(path.stem, path) for path in files]


def migrate() -> list[str]:
    """Apply every pending migration; safe to call concurrently from several processes."""
    applied_now: list[str] = []
    with db.connection_context():
        conn = db.connection()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.commit()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur.execute("SELECT version FROM schema_migrations")
                done = {row[0] for row in cur.fetchall()}
            conn.commit()
            for version, path in available():
                if version in done:
                    continue
                with conn.cursor() as cur:
                    cur.execute(path.read_text())
                    cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
                conn.commit()
                applied_now.append(version)
                log.info("applied migration %s", version)
        except Exception:
            conn.rollback()
            raise
        finally:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
            conn.commit()
    return applied_now
