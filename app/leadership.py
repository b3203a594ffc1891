"""Engine leadership: an advisory lock, a heartbeat that proves liveness, and a fencing epoch.

The lock lives as long as its connection, so a crashed engine releases it at once. A frozen one
(SIGSTOP, a stuck host) keeps its connection, and so its lock, forever: TCP keepalives do not
notice a stopped process because its kernel still answers. So the leader refreshes a heartbeat
row, and a standby that sees it stale terminates the old leader's backends and takes over with
a new epoch. Every engine write transaction reads the epoch first (FOR KEY SHARE, see
:meth:`Leadership.check_epoch`), so a superseded leader that wakes up and reconnects can never
commit again.
"""

from __future__ import annotations

import logging
import select
import time
from collections.abc import Callable

import psycopg2

from app.db import CONNECTION_ERRORS, connect_kwargs, db

log = logging.getLogger(__name__)

ENGINE_LOCK_KEY = 727_002
APPLICATION_PREFIX = "cryptofunk-engine "

TAKE_OVER_SQL = """
INSERT INTO engine_leader (id, epoch, holder, heartbeat_at) VALUES (%(id)s, 1, %(holder)s, now())
ON CONFLICT (id) DO UPDATE
   SET epoch = engine_leader.epoch + 1, holder = EXCLUDED.holder, heartbeat_at = now()
RETURNING epoch
"""

STALE_LEADER_SQL = """
SELECT holder FROM engine_leader
 WHERE id = %s AND heartbeat_at < now() - make_interval(secs => %s)
"""

TERMINATE_SQL = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE application_name = %s AND pid <> pg_backend_pid()
"""


class Superseded(Exception):
    """Another engine took over: this one must not write anything more."""


def application_name(holder: str) -> str:
    """The application_name every connection of an engine carries, so a standby can find them."""
    return (APPLICATION_PREFIX + holder)[:63]


class Leadership:
    """The engine's claim to lead, held on a dedicated autocommit connection."""

    def __init__(self, url: str, holder: str, takeover_seconds: float, key: int = ENGINE_LOCK_KEY):
        self.url = url
        self.holder = holder
        self.takeover_seconds = takeover_seconds
        self.key = key
        # The engine leads row 1; any other leader (an exchange account) the row of its key.
        self.row = 1 if key == ENGINE_LOCK_KEY else key
        self.conn = None
        self.epoch: int | None = None

    def _connect(self) -> None:
        if self.conn is None or self.conn.closed:
            kwargs = connect_kwargs(self.url)
            kwargs["application_name"] = application_name(self.holder)
            self.conn = psycopg2.connect(**kwargs)
            self.conn.autocommit = True

    def try_acquire(self) -> bool:
        """Take the lead if it is free; fence off a leader whose heartbeat went stale."""
        self._connect()
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
            if cur.fetchone()[0]:
                self._take_over(cur)
                return True
            cur.execute(STALE_LEADER_SQL, (self.row, self.takeover_seconds))
            stale = cur.fetchone()
            if stale is not None and stale[0] != self.holder:
                log.warning("engine leader %s stopped proving liveness; fencing it off", stale[0])
                cur.execute(TERMINATE_SQL, (application_name(stale[0]),))
        return False

    def acquire_or_wait(
        self,
        stopping: Callable[[], bool],
        on_standby: Callable[[], None],
        poll_seconds: float,
        channel: str | None = None,
    ) -> bool:
        """Block until this process leads (True; LISTENing on ``channel`` when given) or
        ``stopping()`` says to give up (False). A standby calls ``on_standby`` at every poll;
        an unreachable database is waited out the same way."""
        while not stopping():
            try:
                if self.try_acquire():
                    if channel is not None:
                        self.listen(channel)
                    return True
                on_standby()
            except psycopg2.Error as exc:
                log.warning("database unavailable (%s); retrying", exc)
                self.release()
            time.sleep(poll_seconds)
        return False

    def _take_over(self, cur) -> None:
        # FOR UPDATE waits for any write transaction of the old leader still holding the epoch
        # FOR KEY SHARE; terminated backends release it at once.
        cur.execute("BEGIN")
        cur.execute("SELECT epoch FROM engine_leader WHERE id = %s FOR UPDATE", (self.row,))
        cur.execute(TAKE_OVER_SQL, {"holder": self.holder, "id": self.row})
        self.epoch = cur.fetchone()[0]
        cur.execute("COMMIT")

    def heartbeat(self) -> bool:
        """Prove liveness; False when the lock's connection is gone or another engine leads."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(
                    "UPDATE engine_leader SET heartbeat_at = now() WHERE id = %s AND epoch = %s",
                    (self.row, self.epoch),
                )
                return cur.rowcount == 1
        except (psycopg2.Error, OSError, AttributeError):
            return False

    def check_epoch(self, database) -> None:
        """Run at the start of every engine write transaction (see app.db transaction guard)."""
        cursor = database.execute_sql(
            "SELECT epoch FROM engine_leader WHERE id = %s FOR KEY SHARE", (self.row,)
        )
        row = cursor.fetchone()
        if row is None or row[0] != self.epoch:
            raise Superseded(f"epoch {self.epoch} is no longer current")

    def listen(self, channel: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"LISTEN {channel}")

    def wait(self, timeout: float) -> bool:
        """Sleep until a notification or ``timeout``; False if the connection (and lock) died."""
        try:
            select.select([self.conn], [], [], timeout)
            self.conn.poll()
            self.conn.notifies.clear()
            return True
        except (psycopg2.Error, OSError):
            return False

    def release(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None
        self.epoch = None


def run_guarded(
    cycle: Callable[[], object],
    name: str,
    retry_after: float,
    on_failure: Callable[[Exception], None] | None = None,
) -> tuple[bool, object]:
    """One cycle of a leading process: ``(still_leading, what cycle returned)``.

    Superseded (another process holds a newer epoch): no longer leading. A lost database: the
    broken connections are dropped and the next cycle reconnects. Any other failure must not
    kill the process: it is logged (and handed to ``on_failure``), then retried after
    ``retry_after`` seconds. The result is None whenever the cycle did not finish.
    """  # fmt: skip
    try:
        return True, cycle()
    except Superseded as exc:
        log.warning("%s was superseded: %s", name, exc)
        return False, None
    except CONNECTION_ERRORS as exc:
        log.warning("%s cycle lost the database: %s", name, exc)
        db.discard_broken()
        return True, None
    except Exception as exc:
        log.exception("%s cycle failed; retrying", name)
        if on_failure is not None:
            on_failure(exc)
        time.sleep(retry_after)
        return True, None
