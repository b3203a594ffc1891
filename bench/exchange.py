"""Paper-exchange benchmarks: tick throughput with resting orders, and order-to-fill latency.

    python bench/exchange.py                 # both, with the defaults below
    python bench/exchange.py --ticks 5000 --orders 1000 --sessions 10 --latency-orders 200

1. Tick throughput: SESSIONS sessions (one symbol each) hold ORDERS resting LIMIT orders in
   total, priced so that no tick crosses them; TICKS ticks spread over the symbols are recorded,
   then the engine's processing pass (matching, protective exits, marking the tick processed) is
   timed until none is left. This is the engine's per-tick cost with a full book.
2. Latency: a real gunicorn web process and a real worker (manual feed) on the same database; a
   WebSocket client waits for each MARKET order's FILLED order_update. Measured from just before
   POST /api/v1/orders to receipt of that message, one order at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import requests
from common import OPEN_ACCESS, ROOT, bench_database, percentile

from app.db import db
from app.models import ALL_TABLES
from app.runtime_config import update_config
from app.trading.market import record_tick
from app.trading.matching import process_pending
from app.trading.orders import OrderRequest, place_order
from app.trading.rules import Rules
from app.trading.sessions import start_session
from tests.live import LiveClient, WebServer


def reset() -> None:
    db.execute_sql(f"TRUNCATE {', '.join(ALL_TABLES)} CASCADE")


def tick_throughput(ticks: int, orders: int, sessions: int) -> dict:
    reset()
    rules = Rules.current()
    symbols = [f"BENCH{i}/USDT" for i in range(sessions)]
    for symbol in symbols:
        record_tick(symbol, Decimal(100))
    process_pending(rules)
    by_symbol = {symbol: start_session(symbol, Decimal(10**9), "PAPER").id for symbol in symbols}
    created = 0
    while created < orders:
        symbol = symbols[created % sessions]
        place_order(
            OrderRequest(
                symbol=symbol,
                side="BUY",
                type="LIMIT",
                quantity=Decimal("0.01"),
                price=Decimal(50) + Decimal(created % 40) / 10,
                session_id=by_symbol[symbol],
            )
        )
        created += 1
    process_pending(rules)  # accept the resting orders
    for index in range(ticks):
        record_tick(symbols[index % sessions], Decimal(100) + Decimal(index % 50) / 10)
    started = time.perf_counter()
    processed = 0
    while True:
        done = process_pending(rules, max_ticks=500)
        processed += done
        if done == 0:
            break
    elapsed = time.perf_counter() - started
    return {
        "benchmark": "tick_throughput",
        "sessions": sessions,
        "resting_orders": orders,
        "ticks": ticks,
        "seconds": round(elapsed, 3),
        "ticks_per_second": round(ticks / elapsed, 1),
    }


def order_latency(database_url: str, count: int) -> dict:
    reset()
    update_config({"max_position_size": 1})
    web = WebServer(database_url, workers=1, LOG_LEVEL="warning", **OPEN_ACCESS)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MARKET_FEED": "manual",
        "LOG_LEVEL": "warning",
    }
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env)
    client = LiveClient(web.ws_url)
    latencies = []
    try:
        client.send("subscribe", {"types": ["order_update"]})
        client.next_of("subscribed")
        requests.post(
            web.url("/api/v1/trade/start"), json={"symbol": "BTC/USDT", "initial_capital": 10**9}
        )
        requests.post(web.url("/api/v1/market/prices"), json={"symbol": "BTC/USDT", "price": 65000})
        time.sleep(2)  # the worker takes the lock and sees the first tick
        session = requests.Session()
        for _ in range(count):
            started = time.perf_counter()
            order = session.post(
                web.url("/api/v1/orders"),
                json={"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": 0.001},
            ).json()["order"]
            client.next_of("order_update", timeout=10, order_id=order["id"], status="FILLED")
            latencies.append(time.perf_counter() - started)
    finally:
        client.close()
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=15)
        web.stop()
    return {
        "benchmark": "market_order_to_filled_event",
        "orders": count,
        "latency_ms_p50": round(percentile(latencies, 0.5) * 1000, 1),
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1),
        "latency_ms_max": round(max(latencies) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=5000)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--latency-orders", type=int, default=200)
    args = parser.parse_args()
    with bench_database() as database_url:
        print(json.dumps(tick_throughput(args.ticks, args.orders, args.sessions)), flush=True)
        print(json.dumps(order_latency(database_url, args.latency_orders)), flush=True)


if __name__ == "__main__":
    main()
