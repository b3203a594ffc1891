"""Server-side prepared statements, kept per connection for the hot reads and writes.

PostgreSQL parses, analyses and plans every statement it is sent as text. For a read by key
that is half of its work: the order detail's select took 100 µs of server CPU as text and
52 µs as a prepared statement (bench/README.md). A pooled connection lives for minutes, so
each statement is prepared once per connection, its ``PREPARE`` sent in the same round trip as
its first ``EXECUTE``, and executed by name after that.

A prepared statement belongs to the server session, not to a transaction: a rollback keeps
it. A statement whose first execution failed may or may not have been prepared, so it is not
recorded and is prepared again under a new name on its next use. Poolers that hand each
transaction a different server session (PgBouncer's transaction mode) cannot keep them:
``DB_PREPARED_STATEMENTS=false`` turns them off.
"""

from __future__ import annotations

import functools
import itertools
import re

from psycopg2.extensions import connection as DriverConnection

_PLACEHOLDER = re.compile(r"%%|%s|%\(")
# The statements PREPARE takes (by their first word).
_PREPARABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "VALUES", "WITH")
# Prepared statements held per connection at most. Each holds a plan in its server process;
# the hot statements are a few dozen, while a caller combining every filter of every list could
# ask for hundreds of shapes, which then run as text.
MAX_PREPARED = 200


class PreparingConnection(DriverConnection):
    """A psycopg2 connection that remembers the statements prepared on its session."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The EXECUTE text of each prepared statement, by the SQL it was prepared from.
        self.prepared: dict[str, str] = {}
        self._names = itertools.count(1)

    def preparation(self, sql: str) -> tuple[str, str] | None:
        """``(PREPARE …; EXECUTE …, EXECUTE …)`` for a first run of ``sql`` under a fresh
        name, both taking the statement's parameters; None if ``sql`` cannot be prepared or
        this connection holds :data:`MAX_PREPARED` already."""
        if len(self.prepared) >= MAX_PREPARED:
            return None
        form = prepared_form(sql)
        if form is None:
            return None
        body, arguments = form
        name = f"cf_{next(self._names)}"
        execute = f"EXECUTE {name}{arguments}"
        return f"PREPARE {name} AS {body}; {execute}", execute


@functools.lru_cache(maxsize=1024)
def prepared_form(sql: str) -> tuple[str, str] | None:
    """The body of ``PREPARE`` for ``sql`` (``%s`` numbered ``$1``, ``$2``…) and the argument
    list of its ``EXECUTE`` (``(%s, %s)``, or nothing without parameters). None for SQL with
    named parameters, more than one statement, or a kind PREPARE does not take (EXPLAIN, SET),
    which are run as text."""
    if ";" in sql or not sql.lstrip()[:6].upper().startswith(_PREPARABLE):
        return None
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        token = match.group(0)
        if token == "%%":
            return token  # a literal percent sign, still escaped for the EXECUTE's formatting
        if token == "%(":
            raise ValueError("named parameter")
        count += 1
        return f"${count}"

    try:
        body = _PLACEHOLDER.sub(number, sql)
    except ValueError:
        return None
    arguments = f"({', '.join(['%s'] * count)})" if count else ""
    return body, arguments
