"""The bare twin of the routes in bench/http_routes.py: plain Flask + psycopg2, same SQL, same JSON.

No ORM, no schemas, no access control, no hooks: each handler runs the SQL the real route runs
and writes the same JSON body, so the difference in throughput is what the project's layers
cost. Served by gunicorn with gevent workers like the real app:

    DATABASE_URL=... gunicorn -k gevent -w 2 -b 127.0.0.1:8090 --chdir bench bare_http:app
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import psycopg2
from flask import Flask, Response, request
from gevent.queue import LifoQueue
from psycogreen.gevent import patch_psycopg

patch_psycopg()

POOL_SIZE = int(os.environ.get("DB_POOL_SIZE", "10"))
STARTED = time.monotonic()


class Pool:
    """At most POOL_SIZE connections per worker, opened on demand; a request waits for one."""

    def __init__(self, dsn: str, size: int):
        self.dsn = dsn
        self.idle: LifoQueue = LifoQueue()
        self.opened = 0
        self.size = size

    def open(self):
        conn = psycopg2.connect(self.dsn, options="-c timezone=UTC")
        conn.autocommit = True  # as peewee runs it: no BEGIN/COMMIT around a plain read
        return conn

    @contextmanager
    def connection(self):
        if self.idle.empty() and self.opened < self.size:
            self.opened += 1
            conn = self.open()
        else:
            conn = self.idle.get()
        try:
            yield conn
        finally:
            self.idle.put(conn)


pool = Pool(os.environ["DATABASE_URL"], POOL_SIZE)
app = Flask(__name__)


def encode(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def reply(body, status: int = 200) -> Response:
    text = json.dumps(body, default=encode, separators=(",", ":"))
    return Response(text, status, mimetype="application/json")


def rows(sql: str, params=()) -> list[dict]:
    with pool.connection() as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


ORDER_COLUMNS = (
    "id, session_id, position_id, exchange_order_id, symbol, exchange, side, type, status, "
    "price, stop_price, quantity, executed_quantity, executed_quote_quantity, time_in_force, "
    "source, placed_at, filled_at, canceled_at, expired_at, error_message, created_at, updated_at"
)
POSITION_COLUMNS = (
    "id, session_id, symbol, exchange, side, status, entry_price, exit_price, quantity, "
    "entry_time, exit_time, stop_loss, take_profit, realized_pnl, unrealized_pnl, fees, "
    "entry_reason, exit_reason, created_at, updated_at"
)
DECISION_COLUMNS = (
    "id, session_id, agent_name, symbol, decision_type, decision, confidence, reasoning, "
    "context, prompt_tokens, completion_tokens, model, outcome, actual_pnl, latency_ms, cost, "
    "created_at, resolved_at"
)
EXACT_TOTAL_UP_TO = 10_000


def page(
    table: str, columns: str, where: str, params: tuple, order: str, limit: int
) -> tuple[list, dict]:
    with pool.connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {order} LIMIT %s OFFSET 0",
            (*params, limit),
        )
        names = [column.name for column in cursor.description]
        items = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        total = len(items)
        if len(items) == limit:
            cursor.execute(
                f"SELECT COUNT(1) FROM (SELECT 1 FROM {table} WHERE {where} LIMIT %s) AS _",
                (*params, EXACT_TOTAL_UP_TO + 1),
            )
            total = cursor.fetchone()[0]
    return items, {"count": len(items), "total": total, "total_exact": True}


@app.get("/api/v1/orders/<order_id>")
def order_detail(order_id):
    found = rows(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = %s LIMIT 1", (order_id,))
    if not found:
        return reply({"error": "order not found", "order_id": order_id}, 404)
    return reply({"order": found[0]})


@app.get("/api/v1/orders")
def order_list():
    items, meta = page(
        "orders", ORDER_COLUMNS, "status = %s", (request.args["status"],),
        "placed_at DESC, id", int(request.args.get("limit", 50)),
    )  # fmt: skip
    return reply({**meta, "orders": items})


@app.get("/api/v1/positions")
def position_list():
    # The benchmark asks for status=all: every position, most recently opened first.
    items, meta = page("positions", POSITION_COLUMNS, "TRUE", (), "entry_time DESC, id", 50)
    return reply({**meta, "positions": items})


@app.get("/api/v1/decisions")
def decision_list():
    items, meta = page("llm_decisions", DECISION_COLUMNS, "TRUE", (), "created_at DESC, id", 50)
    return reply({**meta, "decisions": items, "filter": {"limit": 50, "offset": 0}})


@app.get("/api/v1/decisions/<decision_id>")
def decision_detail(decision_id):
    found = rows(
        f"SELECT {DECISION_COLUMNS}, prompt, response, prompt_embedding::real[] AS "
        "prompt_embedding FROM llm_decisions WHERE id = %s LIMIT 1",
        (decision_id,),
    )
    if not found:
        return reply({"error": "decision not found", "decision_id": decision_id}, 404)
    return reply(found[0])


OUTCOMES = ("SUCCESS", "FAILURE", "PENDING")
DECISION_TYPES = ("signal", "risk_approval")


STATS_SQL = """
SELECT outcome, decision_type, model, GROUPING(outcome, decision_type, model), COUNT(id),
       AVG(confidence), COUNT(id) FILTER (WHERE outcome = 'SUCCESS'),
       COUNT(id) FILTER (WHERE outcome IN ('SUCCESS', 'FAILURE')), AVG(actual_pnl),
       COALESCE(SUM(cost), 0), AVG(latency_ms)
  FROM llm_decisions
 GROUP BY GROUPING SETS ((), (outcome), (decision_type), (model))
"""


@app.get("/api/v1/decisions/stats")
def decision_stats():
    with pool.connection() as conn, conn.cursor() as cursor:
        cursor.execute(STATS_SQL)
        result = cursor.fetchall()
    by = {3: [], 5: [], 6: []}
    for outcome, decision_type, model, grouping, count, *aggregates in result:
        if grouping == 7:
            total = count
            confidence, successes, resolved, pnl, cost, latency = aggregates
        else:
            by[grouping].append(({3: outcome, 5: decision_type, 6: model}[grouping], count))
    ordered = {g: dict(sorted(pairs, key=lambda p: (-p[1], p[0]))) for g, pairs in by.items()}
    return reply({
        "total_decisions": total,
        "by_outcome": {**dict.fromkeys(OUTCOMES, 0), **ordered[3]},
        "by_decision_type": {**dict.fromkeys(DECISION_TYPES, 0), **ordered[5]},
        "avg_confidence": confidence or 0,
        "success_rate": Decimal(successes) / resolved if resolved else 0,
        "avg_pnl": pnl or 0,
        "by_model": ordered[6],
        "total_cost": cost,
        "avg_latency_ms": round(latency or 0),
    })  # fmt: skip


def uptime() -> str:
    minutes, seconds = divmod(int(time.monotonic() - STARTED), 60)
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


@app.get("/api/v1/status")
def status():
    with pool.connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(clients), 0) FROM ws_presence "
            "WHERE seen_at > now() - make_interval(secs => %s)",
            (30,),
        )
        clients = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT holder, epoch, EXTRACT(EPOCH FROM now() - heartbeat_at) FROM engine_leader"
        )
        leader = cursor.fetchone()
        cursor.execute(
            "SELECT name, pid, started_at, restarts, last_exit_code, last_restart_at "
            "FROM supervised_processes ORDER BY name"
        )
        names = [column.name for column in cursor.description]
        processes = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    engine = {"state": "none", "holder": None, "epoch": None, "heartbeat_age_seconds": None}
    if leader is not None:
        holder, epoch, age = leader
        engine = {
            "state": "active" if float(age) < 10 else "stale", "holder": holder, "epoch": epoch,
            "heartbeat_age_seconds": round(float(age), 3),
        }  # fmt: skip
    return reply({
        "status": "operational", "version": os.environ.get("BARE_VERSION", ""),
        "uptime": uptime(),
        "components": {"database": "healthy", "api": "healthy", "websocket": "healthy"},
        "websocket": {"connected_clients": clients}, "engine": engine, "processes": processes,
        "live_account": None,
    })  # fmt: skip


BACKLOG_SQL = (
    "SELECT EXTRACT(EPOCH FROM now() - placed_at) FROM orders "
    "WHERE accepted_at IS NULL AND status = 'NEW' AND exchange = 'PAPER' "
    "ORDER BY placed_at, id LIMIT 1"
)


AUDIT_SQL = (
    "INSERT INTO audit_log (at, key_name, role, method, route, path, status, client_ip, body) "
    "VALUES (now(), NULL, NULL, 'POST', '/api/v1/orders', '/api/v1/orders', 201, %s, %s)"
)


@app.post("/api/v1/orders")
def create_order():
    """The INSERT of the order, as the issue's bare handler; ?audited=1 also writes the audit
    row the real route writes, in the same transaction (the real route's work, exactly)."""
    audited = request.args.get("audited") == "1"
    raw = request.get_data()
    body = json.loads(raw, parse_float=Decimal)
    with pool.connection() as conn, conn.cursor() as cursor:
        cursor.execute(BACKLOG_SQL)
        cursor.fetchone()
        cursor.execute("BEGIN")
        cursor.execute(
            "SELECT id, exchange FROM trading_sessions WHERE symbol = %s "
            "AND status IN ('RUNNING', 'PAUSED') ORDER BY started_at DESC LIMIT 2",
            (body["symbol"],),
        )
        session_id, exchange = cursor.fetchone()
        cursor.execute(
            "INSERT INTO orders (id, session_id, symbol, exchange, side, type, status, price, "
            "stop_price, quantity, time_in_force, source, placed_at, created_at, updated_at, "
            "executed_quantity, executed_quote_quantity) VALUES (gen_random_uuid(), %s, %s, %s, "
            "%s, %s, 'NEW', %s, NULL, %s, 'GTC', 'manual', now(), now(), now(), 0, 0) "
            f"RETURNING {ORDER_COLUMNS}",
            (session_id, body["symbol"], exchange, body["side"], body["type"], body.get("price"),
             body["quantity"]),
        )  # fmt: skip
        names = [column.name for column in cursor.description]
        order = dict(zip(names, cursor.fetchone(), strict=True))
        if audited:
            cursor.execute(AUDIT_SQL + "; COMMIT", (request.remote_addr, raw.decode()))
        else:
            cursor.execute("COMMIT")
    return reply({"order": order, "message": "Order created successfully"}, 201)
