"""Engine order intake: how fast arrivals are processed, and fill lag under HTTP load.

    python bench/engine_intake.py                       # both parts with the defaults below
    python bench/engine_intake.py --orders 20000 --sessions 10 --clients 200 --rate 100

1. Intake: ORDERS MARKET orders (mixed with 10 % unmarketable limits that rest) are inserted
   directly into the orders table across SESSIONS sessions, then the engine's processing pass
   is timed until every one is filled, rested or rejected. Also reports the longest batch
   transaction.
2. Fill lag under load: a real gunicorn web process (2 workers) and a real engine process;
   CLIENTS HTTP clients (gevent greenlets in this process) place MARKET orders at a sustained
   RATE per second in total for SECONDS, while a tick arrives every second. Fill lag is the
   order's filled_at minus its placed_at, both stamped by the system; also counted: 201s, 503s
   (back-pressure) and other answers.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import timedelta  # noqa: E402
from decimal import Decimal  # noqa: E402

import gevent  # noqa: E402
import requests  # noqa: E402
from common import OPEN_ACCESS, ROOT, bench_database, percentile  # noqa: E402
from peewee import fn  # noqa: E402
from psycogreen.gevent import patch_psycopg  # noqa: E402

patch_psycopg()

from app.db import db  # noqa: E402
from app.models import ALL_TABLES, Order, utcnow  # noqa: E402
from app.runtime_config import update_config  # noqa: E402
from app.trading import intake as order_intake  # noqa: E402
from app.trading import matching  # noqa: E402
from app.trading.market import record_tick  # noqa: E402
from app.trading.rules import Rules  # noqa: E402
from app.trading.sessions import start_session  # noqa: E402
from tests.live import WebServer  # noqa: E402


def reset() -> None:
    db.execute_sql(f"TRUNCATE {', '.join(ALL_TABLES)} CASCADE")


def intake(orders: int, sessions: int) -> dict:
    reset()
    update_config({"max_position_size": 1, "max_positions": 100})
    rules = Rules.current()
    symbols = [f"BENCH{i}/USDT" for i in range(sessions)]
    session_ids = []
    for symbol in symbols:
        record_tick(symbol, Decimal(100))
        session_ids.append(start_session(symbol, Decimal(10**8), "PAPER").id)
    matching.process_pending(rules)
    now = utcnow()
    rows = []
    for index in range(orders):
        resting = index % 10 == 9
        rows.append(
            {
                "id": uuid.uuid4(),
                "session": session_ids[index % sessions],
                "symbol": symbols[index % sessions],
                "exchange": "PAPER",
                "side": "BUY" if index % 3 else "SELL",
                "type": "LIMIT" if resting else "MARKET",
                "price": Decimal(50) if resting else None,
                "quantity": Decimal("0.01"),
                "status": "NEW",
                "placed_at": now + timedelta(microseconds=index),
            }
        )
    with db.atomic():
        for start in range(0, orders, 5000):
            Order.insert_many(rows[start : start + 5000]).execute()
    batch_seconds: list[float] = []
    original = order_intake.accept_batch

    def timed_batch(batch, batch_rules):
        started = time.perf_counter()
        try:
            return original(batch, batch_rules)
        finally:
            batch_seconds.append(time.perf_counter() - started)

    order_intake.accept_batch = timed_batch
    started = time.perf_counter()
    try:
        while matching.process_pending(rules):
            pass
    finally:
        order_intake.accept_batch = original
    elapsed = time.perf_counter() - started
    left = Order.select().where(Order.accepted_at.is_null()).count()
    statuses = {
        status: count
        for status, count in Order.select(Order.status, fn.COUNT(Order.id))
        .group_by(Order.status)
        .tuples()
    }
    return {
        "benchmark": "engine_intake",
        "orders": orders,
        "sessions": sessions,
        "seconds": round(elapsed, 3),
        "orders_per_second": round(orders / elapsed, 1),
        "batch_size": order_intake.INTAKE_BATCH,
        "batch_ms_p50": round(percentile(batch_seconds, 0.5) * 1000, 1),
        "batch_ms_max": round(max(batch_seconds) * 1000, 1),
        "unprocessed": left,
        "statuses": statuses,
    }


def fill_lag(database_url: str, clients: int, rate: float, seconds: float) -> dict:
    reset()
    update_config({"max_position_size": 1, "max_positions": 100})
    web = WebServer(database_url, workers=2, LOG_LEVEL="warning", **OPEN_ACCESS)
    env = {**os.environ, "DATABASE_URL": database_url, "MARKET_FEED": "manual"}
    env["LOG_LEVEL"] = "warning"
    engine = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env)
    answers: dict[str, int] = {}
    try:
        requests.post(
            web.url("/api/v1/trade/start"), json={"symbol": "BTC/USDT", "initial_capital": 10**8}
        )
        requests.post(web.url("/api/v1/market/prices"), json={"symbol": "BTC/USDT", "price": 100})
        time.sleep(2)
        interval = clients / rate  # each client places one order per interval
        deadline = time.monotonic() + seconds
        body = {"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": 0.001}

        def client(offset: float) -> None:
            http = requests.Session()
            next_at = time.monotonic() + offset
            while True:
                gevent.sleep(max(0.0, next_at - time.monotonic()))
                if time.monotonic() >= deadline:
                    return
                try:
                    code = str(
                        http.post(web.url("/api/v1/orders"), json=body, timeout=30).status_code
                    )
                except requests.RequestException as exc:
                    code = type(exc).__name__
                answers[code] = answers.get(code, 0) + 1
                next_at += interval

        def market() -> None:
            # A live market: a fresh tick every second (a MARKET order never fills at a price
            # older than max_price_age_seconds).
            http = requests.Session()
            while time.monotonic() < deadline:
                http.post(
                    web.url("/api/v1/market/prices"), json={"symbol": "BTC/USDT", "price": 100}
                )
                gevent.sleep(1)

        ticker = gevent.spawn(market)
        gevent.joinall([gevent.spawn(client, i * interval / clients) for i in range(clients)])
        ticker.join()
        time.sleep(3)  # let the engine finish what it accepted
        lags = [
            (filled - placed).total_seconds()
            for placed, filled in Order.select(Order.placed_at, Order.filled_at)
            .where(Order.filled_at.is_null(False), Order.source == "manual")
            .tuples()
        ]
        unfilled = Order.select().where(Order.status == "NEW").count()
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(timeout=15)
        web.stop()
    return {
        "benchmark": "fill_lag_under_http_load",
        "clients": clients,
        "target_rate": rate,
        "seconds": seconds,
        "answers": answers,
        "filled": len(lags),
        "left_new": unfilled,
        "fill_lag_ms_p50": round(percentile(lags, 0.5) * 1000, 1) if lags else None,
        "fill_lag_ms_p99": round(percentile(lags, 0.99) * 1000, 1) if lags else None,
        "fill_lag_ms_max": round(max(lags) * 1000, 1) if lags else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--skip-load", action="store_true", help="only the intake part")
    args = parser.parse_args()
    with bench_database() as database_url:
        print(json.dumps(intake(args.orders, args.sessions)), flush=True)
        if not args.skip_load:
            print(json.dumps(fill_lag(database_url, args.clients, args.rate, args.seconds)))


if __name__ == "__main__":
    main()
