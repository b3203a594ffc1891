"""Schema integrity enforced by PostgreSQL itself, and idempotent migrations."""

from __future__ import annotations

from decimal import Decimal

import peewee
import pytest

from app.db import db
from app.migrations import available, migrate
from app.models import Order, TradingSession
from tests.factories import make_order, make_session
from tests.queries import recorded_queries


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


def test_a_transaction_sends_its_begin_with_its_first_statement(app):
    with recorded_queries() as statements, db.atomic():
        db.execute_sql("SELECT 1")
        db.execute_sql("SELECT 2")
    assert statements == ["BEGIN; SELECT 1", "SELECT 2"]
    with recorded_queries() as statements, db.atomic():
        pass
    assert statements == []  # nothing ran: no BEGIN, no COMMIT
    assert db.connection().get_transaction_status() == 0  # idle, not left in a transaction


@pytest.mark.parametrize("direct", ["cursor", "connection"])
def test_work_on_a_cursor_taken_directly_stays_inside_the_transaction(app, direct):
    """Taking the connection or a cursor sends the waiting BEGIN first, so what runs on it
    rolls back with the transaction."""
    session = make_session()

    class Undo(Exception):
        pass

    with pytest.raises(Undo), db.atomic():
        cursor = db.cursor() if direct == "cursor" else db.connection().cursor()
        cursor.execute("DELETE FROM trading_sessions WHERE id = %s", (str(session.id),))
        raise Undo
    assert TradingSession.select().count() == 1


def test_a_rider_on_a_transaction_that_ran_nothing_is_committed_alone(app):
    make_session()
    with db.atomic():
        db.ride_next_commit("UPDATE trading_sessions SET cash = 7", ())
    assert db.take_rider() is True
    assert TradingSession.get().cash == 7


def test_the_pool_serves_waiters_first_come_first_served(database_url):
    """A connection given back goes to the request that has waited longest, never to one that
    just arrived (peewee's own wait let newcomers take it: some requests waited out the whole
    timeout under load while others never waited)."""
    import threading
    import time

    from app.db import PostgresPool, connect_kwargs

    kwargs = connect_kwargs(database_url)
    pool = PostgresPool(kwargs.pop("database"), max_connections=1, timeout=10, **kwargs)
    pool.connect()  # the one connection, held by this thread
    served: list[str] = []

    def request(name: str) -> None:
        pool.connect()
        served.append(name)
        time.sleep(0.05)  # holds it a little, as a request does
        pool.close()

    waiters = []
    for name in ("first", "second", "third"):
        thread = threading.Thread(target=request, args=(name,))
        thread.start()
        waiters.append(thread)
        deadline = time.monotonic() + 5
        while len(pool._waiting) < len(waiters) and time.monotonic() < deadline:
            time.sleep(0.005)  # in line before the next one comes
    pool.close()  # give it back: the first in line gets it
    late = threading.Thread(target=request, args=("newcomer",))
    late.start()  # arrives while the three wait: it queues behind them
    for thread in [*waiters, late]:
        thread.join(timeout=10)
    assert served == ["first", "second", "third", "newcomer"]
    pool.close_all()


def test_a_waiter_gives_up_after_the_pool_timeout(database_url):
    import time

    from app.db import PoolExhausted, PostgresPool, connect_kwargs

    kwargs = connect_kwargs(database_url)
    pool = PostgresPool(kwargs.pop("database"), max_connections=1, timeout=0.3, **kwargs)
    pool.connect()
    import threading

    outcome = {}

    def request() -> None:
        started = time.monotonic()
        try:
            pool.connect()
        except PoolExhausted:
            outcome["waited"] = time.monotonic() - started

    thread = threading.Thread(target=request)
    thread.start()
    thread.join(timeout=5)
    assert 0.25 < outcome["waited"] < 2
    assert not pool._waiting  # it left the line
    pool.close()
    pool.close_all()


GREENLET_POOL_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import sys, gevent
from psycogreen.gevent import patch_psycopg; patch_psycopg()
from app.db import PostgresPool, connect_kwargs
kwargs = connect_kwargs(sys.argv[1])
pool = PostgresPool(kwargs.pop("database"), max_connections=3, timeout=10, **kwargs)
assert pool._greenlets_only
opened, served = [], []
def request(n):
    for i in range(20):
        pool.connect()
        opened.append(len(pool._in_use) + len(pool._connections))
        pool.execute_sql("SELECT %s", (n,)).fetchone()  # waits on the server: others run
        if i % 5 == 4:
            pool.execute_sql("BEGIN")  # left in a transaction: rolled back on check-in
        pool.close()
        served.append(n)
gevent.joinall([gevent.spawn(request, n) for n in range(40)], raise_error=True)
print(len(served), max(opened), len(pool._connections), len(pool._in_use))
"""


def test_greenlets_share_the_pool_without_exceeding_it(database_url):
    """Under gevent the idle check-out and check-in skip the lock: 40 greenlets, 3
    connections, every request served and never a fourth connection."""
    import subprocess
    import sys

    from app.settings import PROJECT_ROOT

    done = subprocess.run(
        [sys.executable, "-c", GREENLET_POOL_SCRIPT, database_url],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    served, most_open, idle, in_use = map(int, done.stdout.split())
    assert (served, idle, in_use) == (800, 3, 0)
    assert most_open <= 3
