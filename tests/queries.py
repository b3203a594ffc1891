"""Count the SQL statements a request runs, so no route regresses into one query per row."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.access.authenticate import key_cache
from app.db import db


@contextmanager
def recorded_queries() -> Iterator[list[str]]:
    """Every statement run through the Peewee database while the block runs."""
    statements: list[str] = []

    def record(event) -> None:
        statements.append(event.sql)

    db.query_hooks.append(record)
    try:
        yield statements
    finally:
        db.query_hooks.remove(record)


def view_queries(client, path: str) -> list[str]:
    """The statements of one GET beyond access control: the caller's key is cached (as a web
    worker's listener would allow) and its rate-limit block leased by a first request."""
    key_cache.trust(True)
    try:
        warm = client.get(path)
        assert warm.status_code == 200, warm.get_data(as_text=True)[:300]
        with recorded_queries() as statements:
            response = client.get(path)
        assert response.status_code == 200
        return statements
    finally:
        key_cache.trust(False)
