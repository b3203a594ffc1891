"""Test fixtures: one real PostgreSQL (embedded or TEST_DATABASE_URL) per run, clean per test."""

from __future__ import annotations

import os
import tempfile

import pytest

from app import create_app
from app.db import db
from app.migrations import migrate
from app.models import ALL_TABLES
from app.settings import Settings


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


@pytest.fixture(autouse=True)
def clean_tables(request):
    """Every test starts from empty tables (TRUNCATE is a few ms; rollback can't span requests)."""
    if "app" not in request.fixturenames and "database_url" not in request.fixturenames:
        yield
        return
    yield
    db.connect(reuse_if_open=True)
    db.execute_sql(f"TRUNCATE {', '.join(ALL_TABLES)}, ws_presence CASCADE")
    db.close()


@pytest.fixture
def client(app):
    return app.test_client()
