"""`python -m app run` end to end: embedded database, engine, agents, web, restarts, Ctrl-C."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest
import requests

from app.settings import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, deadline: float) -> requests.Response:
    while time.monotonic() < deadline:
        try:
            return requests.get(url, timeout=1)
        except (requests.ConnectionError, requests.Timeout):  # not listening, or still booting
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in time")


def place_and_wait_for_fill(http: requests.Session, base: str, side: str) -> dict:
    """A small SOL/USDT MARKET order over HTTP, asserted FILLED within 15 s."""
    placed = http.post(
        f"{base}/api/v1/orders",
        json={"symbol": "SOL/USDT", "side": side, "type": "MARKET", "quantity": 0.01},
    ).json()["order"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        order = http.get(f"{base}/api/v1/orders/{placed['id']}").json()["order"]
        if order["status"] == "FILLED":
            return placed
        time.sleep(0.2)
    raise AssertionError(f"order not filled: {order['status']} {order['error_message']}")


def read_until(process, marker: str, deadline: float) -> str:
    """What the process printed up to and including the first line containing ``marker``."""
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"{marker!r} never printed:\n{''.join(lines)}")


@pytest.fixture
def run_process():
    data_dir = tempfile.mkdtemp(prefix="cfr-", dir="/tmp")
    port = free_port()
    env = {
        **os.environ,
        "API_PORT": str(port),
        "CRYPTOFUNK_DATA_DIR": data_dir,
        "MARKET_FEED": "simulated",
        "FEED_TICK_SECONDS": "0.2",
        "WEB_CONCURRENCY": "1",
        # The test polls faster than a person would.
        "RATE_LIMIT_GENERAL": "1000/minute",
    }
    for name in ("DATABASE_URL", "CRYPTOFUNK_ADMIN_KEY", "AUTH_DISABLED"):
        env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "run"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        process.kill()
        process.wait()
    shutil.rmtree(data_dir, ignore_errors=True)


def test_run_serves_the_api_with_live_prices_and_stops_on_ctrl_c(run_process):
    process, base = run_process
    health = wait_for(f"{base}/health", time.monotonic() + 60)
    banner = read_until(process, "  Database", time.monotonic() + 30)
    assert "initdb" not in banner and "pg_ctl" not in banner  # in the data directory's log
    assert f"Dashboard  {base}/dashboard" in banner
    assert f"API        {base}/api/v1" in banner
    assert f"Docs       {base}/api/docs" in banner
    assert "WebSocket  ws://127.0.0.1:" in banner
    assert "setup log: " in banner and "/pgserver.log" in banner
    assert health.status_code == 200
    assert health.json()["status"] == "healthy"
    # First start: an admin key is made, printed once with how to use it, and required.
    notice = read_until(process, "More keys:", time.monotonic() + 10)
    key = next(line.split()[0] for line in notice.splitlines() if line.startswith("  cf_"))
    assert f"curl -H 'X-API-Key: {key}' {base}/api/v1/status" in notice
    assert requests.get(f"{base}/api/v1/status").status_code == 401
    http = requests.Session()
    http.headers["X-API-Key"] = key
    assert http.get(f"{base}/api/v1/auth/me").json()["role"] == "admin"
    started = http.post(
        f"{base}/api/v1/trade/start", json={"symbol": "SOL/USDT", "initial_capital": 5000}
    )
    assert started.status_code == 201
    deadline = time.monotonic() + 15
    symbols: set[str] = set()
    while time.monotonic() < deadline and "SOL/USDT" not in symbols:
        prices = http.get(f"{base}/api/v1/market/prices").json()["prices"]
        symbols = {price["symbol"] for price in prices}
        time.sleep(0.3)
    # The simulated feed follows configured symbols and those of active sessions.
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT"} <= symbols
    # Small enough to fit under max_position_size even on top of the agents' own position.
    placed = place_and_wait_for_fill(http, base, "BUY")
    fills = http.get(f"{base}/api/v1/trades?order_id={placed['id']}").json()["trades"]
    assert [fill["quantity"] for fill in fills] == [0.01]
    position = http.get(f"{base}/api/v1/positions/SOL-USDT").json()["position"]
    assert position["status"] == "OPEN"

    # A crashed engine is restarted; the web server and the database stay up meanwhile.
    processes = {p["name"]: p for p in http.get(f"{base}/api/v1/status").json()["processes"]}
    assert set(processes) == {"engine", "agents", "web"}
    crashed = processes["engine"]["pid"]
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = http.get(f"{base}/api/v1/status", timeout=2).json()
        engine = next(p for p in status["processes"] if p["name"] == "engine")
        if engine["pid"] != crashed and status["engine"]["holder"].endswith(f":{engine['pid']}"):
            break
        time.sleep(0.3)
    assert (engine["restarts"], engine["last_exit_code"]) == (1, -9), engine
    assert engine["last_restart_at"] is not None
    assert status["engine"]["state"] == "active"
    assert requests.get(f"{base}/health").status_code == 200
    place_and_wait_for_fill(http, base, "SELL")
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "CryptoFunk stopped" in output
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{base}/health", timeout=1)
