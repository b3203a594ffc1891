"""Real server processes and real WebSocket clients for the live-event tests."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress

import requests
from simple_websocket import Client, ConnectionClosed

from app.settings import PROJECT_ROOT

# Requests to live servers carry the session's admin key (tests/conftest.py sets it).
API_HEADERS: dict[str, str] = {}
http = requests.Session()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """gunicorn -k gevent in a subprocess, on its own port, against the test database."""

    def __init__(self, database_url: str, workers: int = 1, **env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/api/v1/ws"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "API_PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "LOG_LEVEL": "warning",
            **{key: str(value) for key, value in env.items()},
        }
        environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # Kept open for the life of the server process, closed and removed in stop().
        self.log_file = tempfile.NamedTemporaryFile(prefix="cf-web-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"],
            cwd=PROJECT_ROOT,
            env=environment,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/health", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or a worker still booting on a busy machine: ask again.
                time.sleep(0.1)
        log = self.log()
        self.stop()
        raise AssertionError(f"gunicorn did not start:\n{log[-4000:]}")

    def log(self) -> str:
        """What the server printed, for failure messages."""
        with open(self.log_file.name, errors="replace") as handle:
            return handle.read()

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        os.unlink(self.log_file.name)


class LiveClient:
    """A real WebSocket client that collects server messages."""

    def __init__(self, url: str, headers: dict | None = None):
        self.ws = Client.connect(url, headers=API_HEADERS if headers is None else headers)

    def send(self, message_type: str, data: dict | None = None) -> None:
        self.ws.send(json.dumps({"type": message_type, "data": data or {}}))

    def next(self, timeout: float = 5.0) -> dict:
        raw = self.ws.receive(timeout=timeout)
        if raw is None:
            raise AssertionError(f"no message within {timeout}s")
        return json.loads(raw)

    def next_of(self, message_type: str, timeout: float = 5.0, **data) -> dict:
        """The next message of a type (and matching data values), skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {message_type} {data} within {timeout}s")
            message = self.next(remaining)
            if message["type"] == message_type and all(
                message["data"].get(key) == value for key, value in data.items()
            ):
                return message

    def drain(self, quiet: float = 0.3) -> list[dict]:
        messages = []
        while (raw := self.ws.receive(timeout=quiet)) is not None:
            messages.append(json.loads(raw))
        return messages

    def wait_closed(self, timeout: float = 10.0) -> int:
        """Block until the server closes the connection; returns the close code."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.ws.receive(timeout=0.2)
        except ConnectionClosed:
            return self.ws.close_reason
        raise AssertionError("connection was not closed")

    def close(self) -> None:
        with suppress(ConnectionClosed):
            self.ws.close()


@contextmanager
def live_client(url: str, headers: dict | None = None):
    client = LiveClient(url, headers)
    try:
        yield client
    finally:
        client.close()


def raw_websocket(
    port: int, receive_buffer: int = 4096, origin: str | None = None, expect: int = 101
) -> socket.socket:
    """A handshaken WebSocket that never reads or answers pings: the slowest possible client."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    origin_line = f"Origin: {origin}\r\n" if origin else ""
    origin_line += "".join(f"{name}: {value}\r\n" for name, value in API_HEADERS.items())
    sock.sendall(
        (
            f"GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"{origin_line}\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(f"HTTP/1.1 {expect}".encode()), response
    return sock


def connected_clients(server: WebServer) -> int:
    return http.get(server.url("/api/v1/status")).json()["websocket"]["connected_clients"]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def start_worker(database_url: str, command: str = "worker", **env) -> subprocess.Popen:
    """A real engine process (manual feed) against ``database_url``; ``command="agents"`` for an
    agents process. ``env`` adds settings such as ENGINE_TAKEOVER_SECONDS."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MARKET_FEED": "manual",
        "LOG_LEVEL": "warning",
        **{key: str(value) for key, value in env.items()},
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app", command],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
