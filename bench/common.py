"""What every benchmark needs: a migrated database of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import db, init_database  # noqa: E402
from app.migrations import migrate  # noqa: E402

# These benchmarks measure the engine, agents and event path, not access control (that is
# bench/access_cost.py): their servers run on loopback without keys or rate limits.
OPEN_ACCESS = {"AUTH_DISABLED": "true", "RATE_LIMIT_ENABLED": "false"}


@contextmanager
def bench_database() -> Iterator[str]:
    """DATABASE_URL if set, else a throwaway embedded PostgreSQL; migrated, and yielded as a URL."""
    url = os.environ.get("DATABASE_URL")
    embedded = data_dir = None
    if not url:
        from app.embedded import EmbeddedPostgres

        data_dir = tempfile.mkdtemp(prefix="cfb-", dir="/tmp")
        embedded = EmbeddedPostgres(data_dir, cleanup_mode="delete")
        url = embedded.url("cryptofunk_bench")
    init_database(url, pool_size=2)
    migrate()
    try:
        yield url
    finally:
        db.close_all()
        if embedded:
            embedded.stop()
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def percentile(values: list[float], fraction: float) -> float:
    """The value at ``fraction`` (0..1) of the sorted values (nearest rank, no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def workers_of(server) -> list[int]:
    """The pids of a gunicorn server's workers (``server``: a WebServer or a BareServer)."""
    children = subprocess.run(
        ["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True
    ).stdout.split()
    return [int(pid) for pid in children]


class BareServer:
    """gunicorn serving one of the bare comparison apps in bench/, with gevent workers like
    the real web process."""

    def __init__(self, database_url: str, app: str, ready_path: str, workers: int = 2, **env):
        import requests

        from tests.live import free_port

        self.port = free_port()
        environment = {**os.environ, "DATABASE_URL": database_url, **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", str(workers),
             "--worker-connections", "2000", "--keep-alive", "5", "--log-level", "warning",
             "-b", f"127.0.0.1:{self.port}", "--chdir", str(ROOT / "bench"), app],
            env=environment,
        )  # fmt: skip
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/v1/ws"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.url(ready_path), timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the bare server {app} did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:  # open WebSockets hold a graceful stop
                self.process.kill()
                self.process.wait()
