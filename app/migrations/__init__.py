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
    """Apply every pending migration, each in its own transaction.

    Safe to call concurrently from several processes: a session advisory lock serialises them.
    """
    applied_now: list[str] = []
    with db.connection_context():
        # Peewee keeps connections in autocommit; atomic() below opens a real transaction.
        db.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            db.execute_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in db.execute_sql("SELECT version FROM schema_migrations")}
            for version, path in available():
                if version in done:
                    continue
                with db.atomic(), db.connection().cursor() as cursor:
                    # A raw cursor: migration SQL may contain % and must not be interpolated.
                    cursor.execute(path.read_text())
                    cursor.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                    )
                applied_now.append(version)
                log.info("applied migration %s", version)
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now
