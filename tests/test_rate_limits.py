"""Rate limits: general and write limits per key (or address), shared by every worker."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import replace

import pytest
import requests

from app import create_app
from app.access import limits
from app.db import db
from tests.conftest import with_key
from tests.factories import make_key
from tests.live import WebServer

TICK = {"symbol": "BTC/USDT", "price": 100}


@pytest.fixture
def limited(settings):
    return create_app(replace(settings, rate_limit_general="5/minute", rate_limit_write="2/minute"))


def keyed(app, **key_options):
    options = {"rate_limit": None, "write_limit": None, **key_options}
    return with_key(app.test_client(), make_key("trader", **options))


def test_general_routes_are_limited_per_key_with_the_headers_clients_know(limited):
    client = keyed(limited)
    remaining = []
    for _ in range(5):
        response = client.get("/api/v1/orders")
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    refused = client.get("/api/v1/orders")
    assert refused.status_code == 429
    assert refused.json["error"] == "rate limit exceeded"
    assert "5 per 1 minute general requests" in refused.json["details"]
    assert 1 <= refused.json["retry_after"] <= 60
    assert refused.headers["Retry-After"] == str(refused.json["retry_after"])
    # Another key has its own allowance.
    assert keyed(limited).get("/api/v1/orders").status_code == 200


def test_writes_have_their_own_smaller_limit(limited):
    client = keyed(limited)
    assert client.post("/api/v1/market/prices", json=TICK).status_code == 201
    assert client.post("/api/v1/market/prices", json=TICK).status_code == 201
    refused = client.post("/api/v1/market/prices", json=TICK)
    assert refused.status_code == 429
    assert "write requests" in refused.json["details"]
    # Reads are counted apart from writes.
    assert client.get("/api/v1/market/prices").status_code == 200


def test_a_key_may_carry_its_own_limits(limited):
    feeder = keyed(limited, rate_limit="3/minute", write_limit="50/minute")
    for _ in range(10):
        assert feeder.post("/api/v1/market/prices", json=TICK).status_code == 201
    for _ in range(3):
        assert feeder.get("/api/v1/orders").status_code == 200
    assert feeder.get("/api/v1/orders").status_code == 429


def test_several_windows_bind_together(limited):
    client = keyed(limited, rate_limit="2/second;4/minute")
    # Windows are aligned to the epoch; the test takes about 3 s, so it must not straddle a
    # minute boundary (the minute's window would start afresh in the middle of it).
    if time.time() % 60 > 55:
        time.sleep(60.5 - time.time() % 60)
    time.sleep(1.02 - time.time() % 1)  # start just after a second (window) boundary
    statuses = [client.get("/api/v1/orders").status_code for _ in range(2)]
    assert client.get("/api/v1/orders").status_code == 429  # 2 per second
    time.sleep(1.05)
    statuses.append(client.get("/api/v1/orders").status_code)
    assert statuses == [200, 200, 200]
    time.sleep(1.05)
    refused = client.get("/api/v1/orders")
    assert refused.status_code == 429  # 4 per minute: refused requests count too
    assert "4 per 1 minute" in refused.json["details"]


def test_anonymous_public_routes_count_per_address_and_probes_never(limited):
    visitor = limited.test_client()
    visitor.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    assert [visitor.get("/").status_code for _ in range(6)] == [200] * 5 + [429]
    assert visitor.get("/api/v1/openapi.json").status_code == 429
    assert all(visitor.get("/health").status_code == 200 for _ in range(10))
    assert "X-RateLimit-Limit" not in visitor.get("/api/v1/health").headers
    neighbour = limited.test_client()
    neighbour.environ_base["REMOTE_ADDR"] = "192.0.2.2"
    assert neighbour.get("/").status_code == 200


def test_limits_can_be_switched_off(settings):
    unlimited = create_app(replace(settings, rate_limit_enabled=False,
                                   rate_limit_general="1/minute"))  # fmt: skip
    client = keyed(unlimited)
    assert all(client.get("/api/v1/orders").status_code == 200 for _ in range(5))
    assert "X-RateLimit-Limit" not in client.get("/api/v1/orders").headers
    assert client.get("/api/v1/auth/me").json["limits"] == {
        "general": None,
        "write": None,
        "ws_connections": 5,
    }


def test_every_window_of_a_request_is_counted_in_one_statement(app, monkeypatch):
    counter = limits.PostgresCounter()
    counter._last_sweep = time.monotonic()  # no sweep during this test
    windows = limits.windows("10/second;100/minute;1000/hour", "general:key:x")
    statements = []
    execute = db.execute_sql
    monkeypatch.setattr(
        db, "execute_sql", lambda *a, **k: statements.append(a[0]) or execute(*a, **k)
    )
    states = counter.hit(windows)
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO rate_limit_windows")
    assert [(s.hits, s.remaining) for s in states] == [(1, 9), (1, 99), (1, 999)]
    assert [s.hits for s in counter.hit(windows)] == [2, 2, 2]


def test_expired_windows_are_swept(app):
    db.execute_sql(
        "INSERT INTO rate_limit_windows VALUES ('old', 1, 5), ('current', 99999999999, 1)"
    )
    counter = limits.PostgresCounter()
    counter.hit(limits.windows("5/minute", "general:key:y"))
    left = {row[0] for row in db.execute_sql("SELECT bucket FROM rate_limit_windows")}
    assert "old" not in left and "current" in left


def test_a_limits_storage_uri_replaces_the_database_counter(settings):
    in_memory = create_app(replace(settings, ratelimit_storage_uri="memory://",
                                   rate_limit_general="2/minute"))  # fmt: skip
    client = keyed(in_memory)
    assert [client.get("/api/v1/orders").status_code for _ in range(3)] == [200, 200, 429]
    assert db.execute_sql("SELECT count(*) FROM rate_limit_windows").fetchone()[0] == 0


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
def test_redis_counts_for_every_worker_when_configured(settings, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        uri = f"redis://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as attempt:
                if attempt.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        first = create_app(
            replace(settings, ratelimit_storage_uri=uri, rate_limit_general="3/minute")
        )
        second = create_app(
            replace(settings, ratelimit_storage_uri=uri, rate_limit_general="3/minute")
        )
        key = make_key("viewer", rate_limit=None)
        a, b = with_key(first.test_client(), key), with_key(second.test_client(), key)
        statuses = [client.get("/api/v1/orders").status_code for client in (a, b, a, b)]
        assert statuses == [200, 200, 200, 429]
    finally:
        redis.terminate()
        redis.wait()


def test_two_worker_processes_share_one_allowance(database_url):
    server = WebServer(database_url, workers=2, RATE_LIMIT_GENERAL="20/minute")
    try:
        key = make_key("viewer", rate_limit=None)
        remaining, statuses = [], []
        for _ in range(26):
            # A new connection per request, so both workers answer some of them.
            response = requests.get(server.url("/api/v1/orders"), headers={"X-API-Key": key},
                                    timeout=5)  # fmt: skip
            statuses.append(response.status_code)
            remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        assert statuses == [200] * 20 + [429] * 6
        # One count for both workers: per-worker counters would repeat values.
        assert remaining[:20] == list(range(19, -1, -1))
    finally:
        server.stop()


def test_large_allowances_are_leased_in_blocks_and_never_overspent(app, monkeypatch):
    from app.access.ratelimit import RateLimiter
    from app.access.roles import Identity, Role

    bot = Identity(key_id="bot", name="bot", role=Role.TRADER, rate_limit="1000/minute")
    workers = [RateLimiter(limits.PostgresCounter(), "1/minute", "1/minute") for _ in range(2)]
    statements = []
    execute = db.execute_sql
    monkeypatch.setattr(
        db, "execute_sql", lambda *a, **k: statements.append(a[0]) or execute(*a, **k)
    )
    allowed = remaining = 0
    for attempt in range(1100):
        verdict = workers[attempt % 2].count(bot, "127.0.0.1", "general")
        if not verdict.exceeded:
            allowed += 1
            remaining = int(verdict.headers()["X-RateLimit-Remaining"])
        if attempt == 899:
            round_trips_for_900 = sum(s.startswith("INSERT") for s in statements)
    # Blocks of 1000/50 = 20: one round trip per block, never more than the limit in all, and
    # at most one unused block per worker refused early.
    assert 1000 - 2 * 20 <= allowed <= 1000
    assert round_trips_for_900 <= 900 // 20 + 2
    assert remaining >= 0
    shared = db.execute_sql(
        "SELECT hits FROM rate_limit_windows WHERE bucket LIKE %s", ("general:key:bot:%",)
    )
    assert shared.fetchone()[0] >= 1000
