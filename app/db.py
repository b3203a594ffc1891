"""The one Peewee database object, configured late so tests and processes choose the server."""

from __future__ import annotations

import logging
from logging import DEBUG
from urllib.parse import parse_qs, unquote, urlparse

import peewee
from playhouse.pool import MaxConnectionsExceeded

# Errors that mean "the server or the connection is gone", as opposed to a bad query.
from psycopg2 import InterfaceError as DriverInterfaceError
from psycopg2 import OperationalError as DriverOperationalError

from app.pool import DRIVER_ERRORS_AS_PEEWEE, PostgresPool
from app.prepared import PreparingConnection

_PEEWEE_LOG = logging.getLogger("peewee")


class _ConnectionState(peewee._ConnectionLocal):
    """peewee's per-context connection state, plus the database's own: the BEGIN waiting for
    the transaction's first statement, and the statement riding the next COMMIT. Class-level
    defaults, so reading them never raises inside (each greenlet starts without them)."""

    pending_begin: str | None = None
    commit_rider: tuple | None = None
    rider_committed = False

    def reset(self):
        super().reset()
        self.pending_begin = None


class Database(PostgresPool):
    """The pool with this project's transactions: a BEGIN that rides the transaction's first
    statement, a statement that rides the next COMMIT, and the engine's guard after BEGIN."""

    # Set by the engine process: runs right after BEGIN of every transaction, so that a
    # superseded engine cannot write (see app.leadership). None everywhere else.
    transaction_guard = None
    # Whether execute_prepared prepares (init_database; DB_PREPARED_STATEMENTS).
    prepare_statements = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._state = _ConnectionState()

    def ride_next_commit(self, sql: str, params) -> None:
        """Run ``sql`` right before the next COMMIT of this context's transaction, in the same
        round trip and so in the same transaction: it commits exactly when the work does (any
        rows it returns are not read). :meth:`take_rider` says whether it ran and forgets it."""
        self._state.commit_rider = (sql, params)
        self._state.rider_committed = False

    def take_rider(self) -> bool:
        """Whether the rider set by :meth:`ride_next_commit` was committed; clears it."""
        state = self._state
        committed = state.rider_committed
        state.commit_rider = None
        state.rider_committed = False
        return committed

    def begin(self, isolation_level=None):
        """Open a transaction. Its BEGIN is not a round trip of its own: it is sent with the
        transaction's first statement (:meth:`execute_sql`), or alone as soon as anything
        takes the connection or a cursor directly. A transaction that runs nothing sends
        nothing. When the engine's guard is set, its check is that first statement."""
        if self.is_closed():
            self.connect()
        if isolation_level is None:
            isolation_level = self._isolation_level
        self._state.pending_begin = (
            f"BEGIN TRANSACTION ISOLATION LEVEL "
            f"{self._adapter.isolation_level_str(isolation_level)}"
            if isolation_level
            else "BEGIN"
        )
        if self.transaction_guard is not None:
            try:
                self.transaction_guard(self)
            except BaseException:
                self.rollback()
                raise

    def execute_sql(self, sql, params=None):
        """Run ``sql`` (a waiting BEGIN prefixed to it). Straight to the driver unless peewee's
        query log or query hooks are on: its own path is several calls deep per statement."""
        state = self._state
        if state.pending_begin is not None:
            sql = f"{state.pending_begin}; {sql}"
            state.pending_begin = None
        if self.query_hooks or _PEEWEE_LOG.isEnabledFor(DEBUG):
            return super().execute_sql(sql, params)
        with DRIVER_ERRORS_AS_PEEWEE:
            cursor = self.cursor()
            cursor.execute(sql, params or ())
        return cursor

    def execute_prepared(self, sql, params=(), then: str | None = None):
        """Run ``sql`` as a prepared statement of this context's connection (app.prepared):
        parsed and planned once per connection, its PREPARE riding its first execution.
        ``then`` is a statement without parameters sent after it in the same round trip."""
        statement, remembered = self._prepared_form_of(sql)
        cursor = self.execute_sql(f"{statement}; {then}" if then else statement, params)
        if remembered is not None:  # prepared only once it ran: a failed run is not trusted
            self._state.conn.prepared[sql] = remembered
        return cursor

    def _prepared_form_of(self, sql: str) -> tuple[str, str | None]:
        """What to send for ``sql``, and the EXECUTE to remember once it has run: the EXECUTE
        alone if this connection has it prepared; PREPARE and EXECUTE if not; or the text
        itself (preparing off, a query log or hooks on, or nothing more to prepare here)."""
        if not self.prepare_statements or self.query_hooks or _PEEWEE_LOG.isEnabledFor(DEBUG):
            return sql, None  # a query log shows the SQL rather than a statement's name
        state = self._state
        if state.closed:
            self.connect()
        execute = state.conn.prepared.get(sql)
        if execute is not None:
            return execute, None
        preparation = state.conn.preparation(sql)
        if preparation is None:
            return sql, None
        return preparation

    def cursor(self, named_cursor=None):
        """A cursor on this context's connection (opened if need be); a waiting BEGIN is sent
        first, so work done on the cursor directly is inside the transaction."""
        state = self._state
        if state.closed:
            self.connect()
        cursor = state.conn.cursor()
        if state.pending_begin is not None:
            self._send_pending_begin(cursor)
        return cursor

    def connection(self):
        connection = super().connection()
        if self._state.pending_begin is not None:
            self._send_pending_begin(connection.cursor())
        return connection

    def _send_pending_begin(self, cursor) -> None:
        state = self._state
        statement, state.pending_begin = state.pending_begin, None
        with DRIVER_ERRORS_AS_PEEWEE:
            cursor.execute(statement)

    def commit(self):
        state = self._state
        rider = state.commit_rider
        if state.pending_begin is not None:  # the transaction ran nothing: nothing to commit
            state.pending_begin = None
            if rider is not None:  # the rider alone is the whole transaction
                state.commit_rider = None
                self.execute_prepared(*rider)
                state.rider_committed = True
            return None
        if rider is None:
            return super().commit()
        state.commit_rider = None
        sql, params = rider
        self.execute_prepared(sql, params, then="COMMIT")
        state.rider_committed = True
        return None

    def rollback(self):
        state = self._state
        if state.pending_begin is not None:  # the transaction ran nothing: nothing to undo
            state.pending_begin = None
            return None
        return super().rollback()


db = Database(None, autoconnect=True)

# The pool's own "no connection free in time".
PoolExhausted = MaxConnectionsExceeded

CONNECTION_ERRORS = (
    peewee.OperationalError,
    peewee.InterfaceError,
    DriverOperationalError,
    DriverInterfaceError,
)


def connect_kwargs(url: str) -> dict:
    """Translate a ``postgresql://`` URL (TCP or unix-socket ``?host=/dir``) to psycopg2 kwargs."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ValueError("DATABASE_URL must start with postgresql://")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    kwargs: dict = {
        "database": unquote(parsed.path.lstrip("/")) or "postgres",
        "user": unquote(parsed.username) if parsed.username else None,
        "password": unquote(parsed.password) if parsed.password else None,
        "host": query.pop("host", None) or parsed.hostname,
        "port": parsed.port,
    }
    kwargs.update(query)
    # Every timestamp leaves the database in UTC, whatever the server's own time zone is.
    kwargs["options"] = (kwargs.get("options", "") + " -c timezone=UTC").strip()
    kwargs.setdefault("connect_timeout", 5)
    return {key: value for key, value in kwargs.items() if value is not None}


# pgvector's HNSW scan settings for every connection: 40 candidates per step (recall@10 above
# 0.99 on 16-dimensional embeddings at a million decisions, bench/similar.py), and an iterative
# scan, so a WHERE clause that discards candidates makes the walk go on instead of coming back
# short. Set at connect time, a similarity query needs no transaction to SET LOCAL them.
HNSW_EF_SEARCH = 40
VECTOR_SEARCH_OPTIONS = f"-c hnsw.ef_search={HNSW_EF_SEARCH} -c hnsw.iterative_scan=relaxed_order"


def init_database(
    url: str,
    pool_size: int = 10,
    *,
    pool_timeout: float = 10.0,
    lock_timeout: float | None = None,
    statement_timeout: float | None = None,
    application_name: str | None = None,
    prepare_statements: bool = True,
) -> None:
    """Point the shared database object at ``url`` with a bounded pool.

    ``pool_timeout`` is how long a checkout waits for a free connection; ``lock_timeout`` and
    ``statement_timeout`` (seconds) bound every statement, so that a request never waits long
    on a row lock or a slow query (web processes set them; migrations and the engine do not).
    ``prepare_statements`` lets :meth:`Database.execute_prepared` prepare (app.prepared).
    """
    if not db.deferred:
        db.close_all()
    kwargs = connect_kwargs(url)
    name = kwargs.pop("database")
    options = [kwargs.get("options", ""), VECTOR_SEARCH_OPTIONS]
    if lock_timeout:
        options.append(f"-c lock_timeout={int(lock_timeout * 1000)}")
    if statement_timeout:
        options.append(f"-c statement_timeout={int(statement_timeout * 1000)}")
    kwargs["options"] = " ".join(option for option in options if option)
    if application_name:
        kwargs["application_name"] = application_name
    if prepare_statements:
        kwargs["connection_factory"] = PreparingConnection
    db.prepare_statements = prepare_statements
    # Peewee's init() merges into the previous parameters; a stale port or host must not survive.
    db.connect_params = {}
    db.init(name, max_connections=pool_size, timeout=pool_timeout, stale_timeout=300, **kwargs)


def close_request_connection(exc: BaseException | None = None) -> None:
    """Return this greenlet's connection to the pool (discarded if the server dropped it), and
    forget a commit rider the request left (the next request may run on this thread)."""
    if db._state.commit_rider is not None:
        db.take_rider()
    if db.is_closed():
        return
    try:
        db.close()
    except CONNECTION_ERRORS:
        db.manual_close()


# SQLSTATEs of "gave up waiting": lock_timeout, statement_timeout. The server is fine; the
# request may simply be retried.
TIMEOUT_SQLSTATES = ("55P03", "57014")
# deadlock_detected, serialization_failure: the transaction was rolled back whole and may be
# run again as it was.
RETRYABLE_SQLSTATES = ("40P01", "40001")


def _sqlstate(error: BaseException) -> str | None:
    # peewee keeps the driver's exception as ``orig``; psycopg2's carries the SQLSTATE.
    candidates = (error, getattr(error, "orig", None), error.__cause__, error.__context__)
    for candidate in candidates:
        code = getattr(candidate, "pgcode", None)
        if code:
            return code
    return None


def is_timeout(error: BaseException) -> bool:
    """True for a lock or statement timeout (as raised by psycopg2, or wrapped by peewee)."""
    return _sqlstate(error) in TIMEOUT_SQLSTATES


def is_retryable(error: BaseException) -> bool:
    """True for a deadlock or serialization failure: run the transaction again."""
    return _sqlstate(error) in RETRYABLE_SQLSTATES


def probe(url: str, timeout: float = 1.0) -> bool:
    """Can a new connection reach the server and run a query within ``timeout`` seconds?

    Uses its own connection, outside the pool, so an exhausted pool cannot make a healthy
    process look dead. Under gevent the deadline is a gevent timeout, because libpq rounds
    ``connect_timeout`` up to whole seconds (and to at least 2).
    """
    import gevent
    import psycopg2
    from gevent import monkey

    kwargs = connect_kwargs(url)
    kwargs["connect_timeout"] = max(2, int(timeout + 0.999))

    def attempt() -> bool:
        conn = psycopg2.connect(**kwargs)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        finally:
            conn.close()

    try:
        if monkey.is_module_patched("socket"):
            with gevent.Timeout(timeout):
                return attempt()
        return attempt()
    except (psycopg2.Error, OSError, gevent.Timeout):
        return False
