"""Test fixtures: one real PostgreSQL (embedded or TEST_DATABASE_URL) per run, clean per test."""

from __future__ import annotations

import os
import tempfile

import pytest

from app import create_app
from app.access import keys
from app.access.authenticate import key_cache
from app.db import db
from app.migrations import migrate
from app.models import ALL_TABLES
from app.schemas import dumping
from app.settings import Settings
from tests import live

# Every response dumped by a compiled schema is compared with marshmallow's own dump, here and
# in the live servers the tests start (they inherit the environment).
os.environ["CRYPTOFUNK_VERIFY_DUMPS"] = "1"
dumping.VERIFY = True

# Kept across tests (the other access tables are emptied after each one).
FIXTURE_KEY_PREFIX = "fixture-"
ACCESS_TABLES = ("audit_log", "rate_limit_windows", "ws_connections")


@pytest.fixture(scope="session")
def database_url():
    """TEST_DATABASE_URL (a disposable database: tables are truncated), else embedded."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from app.embedded import EmbeddedPostgres

    # Short path: the server's unix socket lives in it.
    data_dir = tempfile.mkdtemp(prefix="cft-", dir="/tmp")
    server = EmbeddedPostgres(data_dir, cleanup_mode="delete")
    yield server.url("cryptofunk_test")
    db.close_all()
    server.stop()


@pytest.fixture(scope="session")
def settings(database_url) -> Settings:
    return Settings.from_env(database_url=database_url, testing=True, market_feed="manual")


@pytest.fixture(scope="session")
def app(settings):
    application = create_app(settings)
    migrate()
    return application


@pytest.fixture(scope="session", autouse=True)
def admin_key(app) -> str:
    """An admin key for the whole run, with limits no test reaches unless it means to; live
    servers' requests and WebSocket clients (tests/live.py) carry it too."""
    _, raw = keys.create_key(
        keys.KeyRequest(
            name=f"{FIXTURE_KEY_PREFIX}admin",
            role="admin",
            rate_limit="1000000/minute",
            write_limit="1000000/minute",
            ws_connections=10_000,
        )
    )
    live.API_HEADERS["X-API-Key"] = raw
    live.http.headers["X-API-Key"] = raw
    return raw


def with_key(test_client, key: str):
    """A Flask test client that sends ``key`` on every request."""
    test_client.environ_base["HTTP_X_API_KEY"] = key
    return test_client


@pytest.fixture(autouse=True)
def clean_tables(request):
    """Every test starts from empty tables (TRUNCATE is a few ms; rollback can't span requests)."""
    if "app" not in request.fixturenames and "database_url" not in request.fixturenames:
        yield
        return
    yield
    db.connect(reuse_if_open=True)
    tables = (*ALL_TABLES, *ACCESS_TABLES, "ws_presence")
    db.execute_sql(f"TRUNCATE {', '.join(tables)} CASCADE")
    db.execute_sql("DELETE FROM api_keys WHERE name NOT LIKE %s", (f"{FIXTURE_KEY_PREFIX}%",))
    db.close()
    key_cache.trust(False)


@pytest.fixture
def client(app, admin_key):
    """The app's test client, authenticated as the run's admin key."""
    return with_key(app.test_client(), admin_key)


@pytest.fixture
def listener_up(monkeypatch):
    """In-process requests have no LISTEN greenlet, so /ready would rightly answer 503. Tests of
    the whole document state the listener as up; test_operations checks /ready against real
    processes, where the listener runs."""
    from app.realtime.hub import hub

    monkeypatch.setattr(hub, "started", True)
    monkeypatch.setattr(hub, "listening", True)
