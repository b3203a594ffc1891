"""A process's one LISTEN connection: dedicated (outside the request pool), reconnecting with
capped backoff, handing each notification to the handler of its channel."""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent
import psycopg2
from gevent.select import select

from app.db import connect_kwargs
from app.metrics import LISTENER_RECONNECTS

log = logging.getLogger(__name__)

RECONNECT_BACKOFF_START = 0.2
# Capped low: events published while the listener is away are lost to its clients, and a
# database restart is usually over within a second or two.
RECONNECT_BACKOFF_MAX = 1.0
# An idle listener checks its connection this often; a dropped server connection is noticed
# at once anyway (the socket becomes readable and poll() raises).
IDLE_CHECK_SECONDS = 15.0


class Listener:
    """LISTENs on every channel of ``handlers`` (channel → ``handler(payload)``).

    ``on_state(listening, reconnected)`` is called when the connection is up (``reconnected``
    after an earlier one was lost: notifications in between were missed) and when it is lost.
    """

    def __init__(
        self,
        database_url: str,
        handlers: dict[str, Callable[[str], None]],
        on_state: Callable[[bool, bool], None],
    ):
        self.database_url = database_url
        self.handlers = handlers
        self.on_state = on_state
        self.stopping = False

    def run_forever(self) -> None:
        """Listen, and after any failure reconnect, until :meth:`stop`."""
        backoff = RECONNECT_BACKOFF_START
        connected_before = False
        while not self.stopping:
            conn = None
            try:
                conn = psycopg2.connect(**connect_kwargs(self.database_url))
                conn.autocommit = True
                with conn.cursor() as cursor:
                    for channel in self.handlers:
                        cursor.execute(f"LISTEN {channel}")
                backoff = RECONNECT_BACKOFF_START
                if connected_before:
                    LISTENER_RECONNECTS.inc()
                    log.info("event listener reconnected")
                self.on_state(True, connected_before)
                connected_before = True
                self._pump(conn)
            except (psycopg2.Error, OSError) as exc:
                log.warning(
                    "event listener lost the database (%s); retrying in %.1fs", exc, backoff
                )
            except Exception:
                # Whatever went wrong, this process's clients depend on the listener: go on.
                log.exception("event listener failed; retrying in %.1fs", backoff)
            finally:
                self.on_state(False, False)
                if conn is not None and not conn.closed:
                    conn.close()
            if self.stopping:
                return
            gevent.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)

    def stop(self) -> None:
        self.stopping = True

    def _pump(self, conn) -> None:
        while not self.stopping:
            readable, _, _ = select([conn], [], [], IDLE_CHECK_SECONDS)
            if not readable:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
            conn.poll()
            while conn.notifies:
                notify = conn.notifies.pop(0)
                self.handlers[notify.channel](notify.payload)
