"""Child processes of ``python -m app run``: started together, restarted with backoff on a crash.

A crashed engine or agents process is restarted, and the web server and the database stay up.
Each start and restart is recorded in ``supervised_processes``, which GET /api/v1/status shows.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field

import psycopg2

from app.db import connect_kwargs

log = logging.getLogger("cryptofunk.supervisor")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
# A child that ran this long before crashing starts again at the shortest backoff.
HEALTHY_RUN_SECONDS = 60.0

RECORD_START_SQL = """
INSERT INTO supervised_processes (name, pid, started_at, restarts, last_exit_code, last_restart_at)
VALUES (%(name)s, %(pid)s, now(), %(restarts)s, %(code)s,
        CASE WHEN %(restarted)s THEN now() END)
ON CONFLICT (name) DO UPDATE
   SET pid = EXCLUDED.pid, started_at = EXCLUDED.started_at, restarts = EXCLUDED.restarts,
       last_exit_code = EXCLUDED.last_exit_code, last_restart_at = EXCLUDED.last_restart_at
"""


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_START
    restart_at: float | None = None
    last_exit_code: int | None = None
    env: dict = field(default_factory=dict)


class Supervisor:
    """Starts every child, restarts the ones that exit, stops them all on request."""

    def __init__(self, database_url: str, env: dict, cwd):
        self.database_url = database_url
        self.env = env
        self.cwd = cwd
        self.children: list[Child] = []

    def add(self, name: str, command: list[str]) -> None:
        self.children.append(Child(name, command))

    def start_all(self) -> None:
        for child in self.children:
            self._start(child, restarted=False)

    def _start(self, child: Child, *, restarted: bool) -> None:
        child.process = subprocess.Popen(child.command, cwd=self.cwd, env=self.env)
        child.started = time.monotonic()
        child.restart_at = None
        self._record(child, restarted)

    def _record(self, child: Child, restarted: bool) -> None:
        params = {
            "name": child.name,
            "pid": child.process.pid,
            "restarts": child.restarts,
            "code": child.last_exit_code,
            "restarted": restarted,
        }
        try:
            conn = psycopg2.connect(**connect_kwargs(self.database_url))
            try:
                with conn, conn.cursor() as cursor:
                    cursor.execute(RECORD_START_SQL, params)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            log.warning("could not record the start of %s: %s", child.name, exc)

    def poll(self) -> None:
        """Notice exited children and restart them when their backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    log.warning("restarting %s (restart %d)", child.name, child.restarts)
                    self._start(child, restarted=True)
                continue
            code = child.process.poll()
            if code is None:
                continue
            child.last_exit_code = code
            if now - child.started >= HEALTHY_RUN_SECONDS:
                child.backoff = BACKOFF_START
            log.error(
                "%s (pid %s) exited with code %s; restarting in %.0fs",
                child.name,
                child.process.pid,
                code,
                child.backoff,
            )
            child.restart_at = now + child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)

    def stop_all(self, timeout: float = 15.0) -> None:
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
