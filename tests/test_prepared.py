"""Hot statements run as server-side prepared statements, prepared once per connection."""

from __future__ import annotations

import importlib
import pkgutil
import uuid

import peewee
import pytest

import app as app_package
from app.db import db, init_database
from app.models import BaseModel
from app.prepared import PreparingConnection, prepared_form
from app.settings import Settings
from app.statements import CompiledSelect, _insert_sql
from app.trading.orders import ORDER_DETAIL
from tests.factories import make_order, make_session


def prepared_on_this_connection() -> dict[str, dict]:
    """PostgreSQL's own record of this session's prepared statements, by name."""
    rows = db.execute_sql(
        "SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements"
    ).fetchall()
    return {name: {"statement": sql, "generic": g, "custom": c} for name, sql, g, c in rows}


@pytest.fixture
def fresh_connections(app):
    """Nothing prepared yet: the pool's idle connections are closed, the next one is new."""
    db.close_idle()


def sent(cursor) -> str:
    """The text the driver sent for ``cursor``'s last statement."""
    return cursor.query.decode()


def test_a_read_is_prepared_with_its_first_run_and_executed_by_name_after(fresh_connections):
    order = make_order(make_session())
    with db.connection_context():
        first = ORDER_DETAIL.execute({"id": order.id}, "first")
        assert sent(first).startswith("PREPARE cf_")  # in the same round trip as ...
        assert "; EXECUTE cf_" in sent(first)  # ... its first execution
        [row] = first.fetchall()
        assert str(row[0]) == str(order.id)
        [(name, record)] = [
            (name, record)
            for name, record in prepared_on_this_connection().items()
            if '"orders"' in record["statement"]
        ]
        for _ in range(7):
            again = ORDER_DETAIL.execute({"id": order.id}, "first")
            assert sent(again) == f"EXECUTE {name}('{order.id}')"
            assert again.fetchall() == [row]
        record = prepared_on_this_connection()[name]
        assert record["generic"] + record["custom"] == 8
        # A constant LIMIT keeps the plan: PostgreSQL stops planning each run anew.
        assert record["generic"] >= 1


def test_prepared_and_text_runs_answer_the_same(app):
    order = make_order(make_session())
    with db.connection_context():
        prepared = ORDER_DETAIL.first({"id": order.id})
        sql, _ = ORDER_DETAIL.compiled(("id",), "first")
        names = [column.name for column in ORDER_DETAIL.execute({"id": order.id}).description]
        text = dict(zip(names, db.execute_sql(sql, (str(order.id),)).fetchone(), strict=True))
    assert prepared == text


def test_a_rollback_keeps_the_prepared_statement(app):
    order = make_order(make_session())
    with db.connection_context():
        with pytest.raises(ZeroDivisionError), db.atomic():
            ORDER_DETAIL.first({"id": order.id})
            raise ZeroDivisionError
        again = ORDER_DETAIL.execute({"id": order.id}, "first")
        assert sent(again).startswith("EXECUTE cf_")
        assert again.fetchone() is not None


def test_a_failed_first_run_is_prepared_again_under_a_new_name(fresh_connections):
    """The PREPARE may have succeeded before its EXECUTE failed: it is not trusted, and the
    next run prepares under another name instead of colliding with it."""
    order = make_order(make_session())
    with db.connection_context():
        with pytest.raises(peewee.DataError):
            ORDER_DETAIL.execute({"id": "not-a-uuid"}, "first")
        failed_name = None
        for name, record in prepared_on_this_connection().items():
            if '"orders"' in record["statement"]:
                failed_name = name  # PostgreSQL kept it: PREPARE is not transactional
        retry = ORDER_DETAIL.execute({"id": order.id}, "first")
        sent_name = sent(retry).split(" AS ")[0].removeprefix("PREPARE ")
        assert sent(retry).startswith("PREPARE ") and sent_name != failed_name
        assert retry.fetchone() is not None
        assert sent(ORDER_DETAIL.execute({"id": order.id}, "first")).startswith(
            f"EXECUTE {sent_name}("
        )


def test_an_order_and_its_audit_row_run_as_prepared_statements(client, fresh_connections):
    """The session lookup, the INSERT and the audit row riding the COMMIT: prepared by the
    first order, executed by name by the next (one connection serves both requests)."""
    make_session()
    order = {"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "price": 1, "quantity": 1}
    for _ in range(2):
        assert client.post("/api/v1/orders", json=order).status_code == 201
    with db.connection_context():
        records = prepared_on_this_connection().values()
    executions = {
        table: sum(r["generic"] + r["custom"] for r in records if table in r["statement"])
        for table in ("trading_sessions", 'INSERT INTO "orders"', "INSERT INTO audit_log")
    }
    assert executions == {
        "trading_sessions": 2,
        'INSERT INTO "orders"': 2,
        "INSERT INTO audit_log": 2,
    }


def test_prepared_statements_can_be_turned_off(app, database_url, settings, monkeypatch):
    assert Settings.from_env().db_prepared_statements is True
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "false")
    assert Settings.from_env().db_prepared_statements is False
    order = make_order(make_session())
    init_database(database_url, pool_size=2, prepare_statements=False)
    try:
        with db.connection_context():
            assert not isinstance(db.connection(), PreparingConnection)
            cursor = ORDER_DETAIL.execute({"id": order.id}, "first")
            assert sent(cursor).startswith("SELECT ")
            assert prepared_on_this_connection() == {}
    finally:
        init_database(
            database_url,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout,
            lock_timeout=settings.db_lock_timeout,
            statement_timeout=settings.db_statement_timeout,
        )


@pytest.mark.parametrize(
    ("sql", "form"),
    [
        ("SELECT 1", ("SELECT 1", "")),
        ("SELECT a FROM t WHERE b = %s AND c = %s", ("SELECT a FROM t WHERE b = $1 AND c = $2",
                                                    "(%s, %s)")),
        ("SELECT a FROM t WHERE b LIKE '5%%' AND c = %s", ("SELECT a FROM t WHERE b LIKE '5%%' "
                                                         "AND c = $1", "(%s)")),
        ("SELECT a FROM t WHERE b = %(b)s", None),
        ("SELECT 1; SELECT 2", None),
        ("EXPLAIN (FORMAT JSON) SELECT 1 FROM t WHERE b = %s", None),
        ("SET LOCAL statement_timeout = 5", None),
        ("\nSELECT a FROM t", ("\nSELECT a FROM t", "")),
    ],
)  # fmt: skip
def test_the_prepared_form_numbers_the_parameters(sql, form):
    assert prepared_form(sql) == form


def _app_modules():
    for module in pkgutil.walk_packages(app_package.__path__, "app."):
        if ".migrations." not in module.name:
            yield importlib.import_module(module.name)


def _models(base=BaseModel):
    for model in base.__subclasses__():
        yield model
        yield from _models(model)


def _prepare_and_drop(sql: str) -> None:
    body, _ = prepared_form(sql)
    name = f"check_{uuid.uuid4().hex[:8]}"
    db.execute_sql(f"PREPARE {name} AS {body}")
    db.execute_sql(f"DEALLOCATE {name}")


def test_every_compiled_read_and_insert_can_be_prepared(app):
    """PostgreSQL infers each parameter's type from where it stands; a place it cannot (a bare
    ``$1 IS NULL``, an ``IN $1``) would fail every run of that statement. Each compiled read
    (with all its conditions, and with none) and each model's full INSERT is prepared here."""
    selects = {
        id(value): value
        for module in _app_modules()
        for value in vars(module).values()
        if isinstance(value, CompiledSelect)
    }
    assert len(selects) >= 8
    with db.connection_context():
        for select in selects.values():
            for shape in ((), tuple(select.conditions)):
                for kind in ("rows", "first", "page", "count"):
                    _prepare_and_drop(select.compiled(shape, kind)[0])
        tables = set(db.get_tables())
        models = {model for model in _models() if model._meta.table_name in tables}  # not mixins
        assert len(models) >= 10
        for model in models:
            names = tuple(
                name
                for name, field in model._meta.fields.items()
                if not isinstance(field, peewee.AutoField)
            )
            _prepare_and_drop(_insert_sql(model, names))


def test_a_connection_holds_a_bounded_number_of_prepared_statements(fresh_connections, monkeypatch):
    from app import prepared
    from app.trading.orders import ORDER_LIST

    monkeypatch.setattr(prepared, "MAX_PREPARED", 1)
    order = make_order(make_session())
    with db.connection_context():
        assert sent(ORDER_DETAIL.execute({"id": order.id}, "first")).startswith("PREPARE ")
        beyond = ORDER_LIST.execute({"status": "NEW", "limit": 5, "offset": 0}, "page")
        assert sent(beyond).startswith("SELECT ")  # run as text
        assert [str(row[0]) for row in beyond.fetchall()] == [str(order.id)]
        assert len(prepared_on_this_connection()) == 1
