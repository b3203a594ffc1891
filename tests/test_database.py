"""Schema integrity enforced by PostgreSQL itself, and idempotent migrations."""

from __future__ import annotations

from decimal import Decimal

import peewee
import pytest

from app.db import db
from app.migrations import available, migrate
from app.models import Order, TradingSession
from tests.factories import make_order, make_session


def test_migrations_are_idempotent_and_recorded(app):
    assert migrate() == []
    recorded = {row[0] for row in db.execute_sql("SELECT version FROM schema_migrations")}
    assert recorded == {version for version, _ in available()}


def test_pgvector_hnsw_index_exists(app):
    indexdef = db.execute_sql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'llm_decisions_embedding'"
    ).fetchone()[0]
    assert "hnsw" in indexdef
    assert "vector_cosine_ops" in indexdef


@pytest.mark.parametrize(
    "bad",
    [
        {"side": "HOLD"},
        {"type": "ICEBERG"},
        {"status": "DONE"},
        {"quantity": Decimal("0")},
        {"type": "LIMIT", "price": None},
        {"type": "STOP_LOSS", "stop_price": None},
        {"executed_quantity": Decimal("5")},
        {"symbol": "btcusdt"},
    ],
)
def test_order_constraints_are_enforced_by_the_database(app, bad):
    session = make_session()
    with pytest.raises(peewee.IntegrityError), db.atomic():
        make_order(session, **bad)
    assert Order.select().count() == 0


def test_only_one_active_session_per_symbol_and_mode(app):
    make_session()
    with pytest.raises(peewee.IntegrityError), db.atomic():
        make_session()
    make_session(mode="PAPER", status="STOPPED")
    make_session(symbol="ETH/USDT")
    assert TradingSession.select().count() == 3


def test_deleting_a_session_cascades_to_its_orders(app):
    session = make_session()
    make_order(session)
    session.delete_instance()
    assert Order.select().count() == 0
