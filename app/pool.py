"""The connection pool under the one database object: fair waiting, and a lean check-out and
check-in of idle connections (see app.db for the transactions on top of it)."""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque

import gevent.lock
import peewee
from gevent import monkey
from playhouse.pool import MaxConnectionsExceeded, PoolConnection, PooledPostgresqlDatabase
from psycopg2.extensions import TRANSACTION_STATUS_IDLE as STATUS_IDLE
from psycopg2.extensions import TRANSACTION_STATUS_UNKNOWN as STATUS_UNKNOWN

# peewee's wrapper turning driver errors into peewee's (named here: a class body would mangle
# its dunder name).
DRIVER_ERRORS_AS_PEEWEE = peewee.__exception_wrapper__


class PostgresPool(PooledPostgresqlDatabase):
    """Connection pool that trusts a checked-in connection instead of pinging it, and serves
    waiters first come, first served.

    Peewee's default checkout runs ``SELECT 1`` on every connection it hands out; on this stack
    that cost 14-44 % of throughput. A connection that died while idle is instead noticed on its
    first use, reported as a database error (503) and discarded on check-in.

    Check-out and check-in of an idle connection are written out and take the pool lock at
    most once each (none under gevent). Peewee's own path took four locks (its database lock
    and its pool lock, both ways, each a Python-level lock under gevent) and notified a
    condition nobody waits on: a tenth of a small request's instructions.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # peewee's database lock guards only this context's own (thread-local) connection
        # state, which nothing else touches; the pool's structures have the pool lock. peewee's
        # connect takes it before the pool lock and the waiting line below after it: two
        # greenlets could each hold one and wait for the other forever.
        self._lock = peewee._NoopLock()
        # Under gevent every thread is a greenlet of one OS thread, and a greenlet only gives
        # way where it waits on I/O. The check-out and check-in of an idle connection never
        # do (heap and dict operations, the driver's local status; closing a dead or stale
        # connection does not wait either), so no other greenlet can see them half done: they
        # run without the lock, which cost more than all their work. Everything that may wait
        # (opening a connection, rolling one back) still takes the lock.
        self._greenlets_only = monkey.is_module_patched("threading")
        if self._greenlets_only:
            # threading.RLock is then a pure-Python lock over a gevent lock; gevent's own RLock
            # does the same job in half the instructions.
            self._pool_lock = gevent.lock.RLock()
            self._pool_available = threading.Condition(self._pool_lock)
        # Requests waiting for a connection, first come first served (see connect).
        self._waiting: deque[threading.Event] = deque()

    def connect(self, reuse_if_open: bool = False):
        """Check out a connection; when none is free, wait in line for at most the pool timeout.

        Peewee's own wait lets a newcomer take a connection returned for a waiter, so under
        load some requests waited out the whole timeout (503) while others never waited. Here
        a newcomer queues behind the waiters, and a returned connection goes to the first.
        """
        state = self._state
        if not state.closed:
            if reuse_if_open:
                return False
            raise peewee.OperationalError("Connection already opened.")
        if not self._waiting and self._connections:  # the common case: an idle one, no line
            connection = self._take_idle()
            if connection is not None:
                state.set_connection(connection)
                return True
        if not self._wait_timeout:
            return peewee.Database.connect(self, reuse_if_open)
        if not self._waiting:  # nobody in line: open one if the pool has room
            try:
                return peewee.Database.connect(self, reuse_if_open)
            except MaxConnectionsExceeded:
                pass
        with self._pool_lock:
            turn = threading.Event()
            self._waiting.append(turn)
            self._wake_next()  # one may have come back since the attempt above
        deadline = time.monotonic() + self._wait_timeout
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not turn.wait(remaining):
                    raise MaxConnectionsExceeded("no database connection free in time")
                with self._pool_lock:
                    try:
                        connection = peewee.Database.connect(self, reuse_if_open)
                    except MaxConnectionsExceeded:
                        turn.clear()
                        continue
                    self._waiting.remove(turn)
                    self._wake_next()
                    return connection
        finally:
            with self._pool_lock:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                    self._wake_next()

    def _take_idle(self):
        """An idle connection, checked out (the oldest usable one); None if none is left.

        Written out instead of going through peewee's helpers (each a call): it runs on
        every request."""
        if self._greenlets_only:
            return self._pop_idle()
        with self._pool_lock:
            return self._pop_idle()

    def _pop_idle(self):
        now = time.time()
        connections = self._connections
        while connections:
            timestamp, _, connection = heapq.heappop(connections)
            if connection.closed or connection.get_transaction_status() == STATUS_UNKNOWN:
                continue  # dropped by the server or the driver: discarded
            if self._stale_timeout and now - timestamp > self._stale_timeout:
                self._close_raw(connection)
                continue
            # The PoolConnection record peewee keeps, built without its Python __new__.
            self._in_use[id(connection)] = tuple.__new__(
                PoolConnection, (timestamp, connection, now)
            )
            return connection
        return None

    def close(self) -> bool:
        """Give this context's connection back to the pool (peewee's close, one lock). An
        idle connection with nobody waiting goes straight back on the heap; anything else
        (a transaction left open, a dead connection, a waiter to wake) takes :meth:`_close`."""
        state = self._state
        if state.closed:
            return False
        if state.transactions:
            raise peewee.OperationalError("Attempting to close database while transaction is open.")
        connection = state.conn
        try:
            if (
                not self._waiting
                and not connection.closed
                and connection.get_transaction_status() == STATUS_IDLE
            ):
                self._check_in(connection)
            else:
                with DRIVER_ERRORS_AS_PEEWEE:
                    self._close(connection)
        finally:
            state.reset()
        return True

    def _check_in(self, connection) -> None:
        if self._greenlets_only:
            self._push_idle(connection)
            return
        with self._pool_lock:
            self._push_idle(connection)

    def _push_idle(self, connection) -> None:
        pooled = self._in_use.pop(id(connection), None)
        if pooled is None:
            return
        if self._stale_timeout and time.time() - pooled[0] > self._stale_timeout:
            self._close_raw(connection)
            return
        self._heap_counter += 1
        heapq.heappush(self._connections, (pooled[0], self._heap_counter, connection))

    def _wake_next(self) -> None:
        if self._waiting and (
            self._connections or len(self._in_use) < (self._max_connections or float("inf"))
        ):
            self._waiting[0].set()

    def _close(self, conn, close_conn=False):
        """Check ``conn`` in (or close it: ``close_conn``, stale, or left unusable) and hand
        the turn to the first waiter. Peewee's condition is not notified: nobody waits on it,
        waiters queue in ``_waiting``."""
        with self._pool_lock:
            if close_conn or (id(conn) in self._in_use and not self._can_reuse(conn)):
                self._in_use.pop(id(conn), None)
                self._close_raw(conn)
            else:
                self._push_idle(conn)  # stale ones are closed there; one not in use is ignored
            if self._waiting:
                self._wake_next()

    def manual_close(self):
        closed = super().manual_close()
        with self._pool_lock:
            self._wake_next()
        return closed

    def _is_closed(self, conn) -> bool:
        return bool(conn.closed) or self._adapter.txn_status(conn) == self._adapter.txn_unknown

    @property
    def exhausted(self) -> bool:
        """Every connection the pool may open is checked out right now."""
        return len(self._in_use) >= self._max_connections

    def discard_broken(self) -> None:
        """After a connection error: drop this context's connection and every idle one.

        A database restart kills all of them at once; discarding the idle ones now means the
        next requests connect afresh instead of each failing once on a dead connection.
        """
        if not self.is_closed():
            self.manual_close()
        self.close_idle()
