"""Every Procfile process, run the way a PaaS runs them, here by honcho (a Foreman clone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from app.db import db
from app.settings import PROJECT_ROOT
from tests.live import free_port, wait_until

pytest.importorskip("honcho", reason="honcho is not installed (pip install -r requirements.txt)")


def honcho(*args: str, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "honcho", "-f", "Procfile", *args],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        **popen,
    )  # fmt: skip


def test_release_then_web_worker_agents_and_exchange_run_and_stop_on_sigterm(app, database_url):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "MARKET_FEED": "manual",
        "WEB_CONCURRENCY": "1",
        "LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
        # The Procfile says `python` and `gunicorn`: this interpreter's, as on a platform.
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    release = honcho("start", "release", env=env)
    output, _ = release.communicate(timeout=120)
    assert release.returncode == 0, output

    running = honcho("start", "web", "worker", "agents", "exchange", env=env)
    try:
        base = f"http://127.0.0.1:{port}"

        def ready():
            try:  # no idle keep-alive connection left behind: shutdown would wait it out
                return requests.get(f"{base}/ready", headers={"Connection": "close"},
                                    timeout=2).json()  # fmt: skip
            except (requests.RequestException, ValueError):
                return None

        wait_until(lambda: (ready() or {}).get("engine") == "active", timeout=60)
        wait_until(lambda: db.execute_sql(
            "SELECT 1 FROM process_heartbeats WHERE kind = 'agents' AND role = 'running'"
        ).fetchone(), timeout=30)  # fmt: skip
        # No ccxt feed configured: the exchange process says so and idles.
        wait_until(lambda: db.execute_sql(
            "SELECT 1 FROM process_heartbeats WHERE kind = 'exchange' AND role = 'idle'"
        ).fetchone(), timeout=30)  # fmt: skip
        assert ready()["status"] == "ready"
        running.send_signal(signal.SIGTERM)
        output, _ = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
            running.communicate()
    roles = dict(db.execute_sql("SELECT kind, role FROM process_heartbeats").fetchall())
    assert roles == {"worker": "stopped", "agents": "stopped", "exchange": "stopped"}, output
    # honcho runs each line under `sh -c` and reports the shell's exit (killed by the same
    # SIGTERM); what counts is that each process shut down by itself, before honcho's SIGKILL.
    assert "sending SIGKILL" not in output, output[-3000:]
    for stopped_cleanly in ("Shutting down: Master", "engine left the active role",
                            "stopped\", \"process\": \"agents\"",
                            "stopped\", \"process\": \"exchange\""):  # fmt: skip
        assert stopped_cleanly in output, output[-3000:]
