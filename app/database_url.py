"""Choosing the database a process uses: DATABASE_URL, else the embedded server."""

from __future__ import annotations

import os

from app.embedded import EmbeddedPostgres
from app.settings import Settings


def resolve_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """Return the database URL and, when embedded, the server handle the caller must stop.

    The URL is also exported as DATABASE_URL so child processes (gunicorn, the worker) share it.
    """
    if settings.database_url:
        return settings.database_url, None
    server = EmbeddedPostgres(settings.data_dir)
    url = server.url("cryptofunk")
    os.environ["DATABASE_URL"] = url
    return url, server
