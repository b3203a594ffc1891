"""Web worker memory under a long mixed load: does RSS keep growing?

A real gunicorn (2 gevent workers) and a real engine (manual feed) on one database. 1,000
WebSocket clients stay connected (bench/ws_clients.py, in their own process) while, for the
whole run, a steady mix arrives: order lists and details, positions, decisions, status, new
MARKET orders, and market ticks (each tick and fill is an event for every client). The RSS of
each worker is read from /proc every 10 s; the figure is the growth between minute 2 (after
warm-up) and the end.

    python bench/memory.py                     # 10 minutes, 1,000 clients, ~60 requests/s
    python bench/memory.py --minutes 3 --clients 200
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import threading
import time

import requests
from common import OPEN_ACCESS, ROOT, bench_database, workers_of

from tests.live import WebServer, start_worker


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def mixed_load(
    web: WebServer,
    rate: float,
    stop: threading.Event,
    counts: dict,
    timings: dict[str, list[float]] | None = None,
    headers: dict | None = None,
) -> None:
    """About ``rate`` requests a second, of every kind, until ``stop`` is set; each answer's
    status is counted in ``counts`` and, when given, its latency kept in ``timings[kind]``."""
    session = requests.Session()
    session.headers.update(headers or {})
    price = 65000.0
    order_ids: list[str] = []
    kinds = ["orders", "order", "positions", "decisions", "status", "place", "tick"]
    started = time.monotonic()
    sent = 0
    while not stop.is_set():
        kind = random.choice(kinds)
        sent_at = time.perf_counter()
        try:
            if kind == "orders":
                response = session.get(web.url("/api/v1/orders?limit=50"), timeout=10)
            elif kind == "order" and order_ids:
                response = session.get(web.url(f"/api/v1/orders/{random.choice(order_ids)}"),
                                       timeout=10)  # fmt: skip
            elif kind == "positions":
                response = session.get(web.url("/api/v1/positions?status=all"), timeout=10)
            elif kind == "decisions":
                response = session.get(web.url("/api/v1/decisions"), timeout=10)
            elif kind == "status":
                response = session.get(web.url("/api/v1/status"), timeout=10)
            elif kind == "tick":
                price *= 1 + random.uniform(-0.001, 0.001)
                response = session.post(web.url("/api/v1/market/prices"),
                                        json={"symbol": "BTC/USDT", "price": round(price, 2)},
                                        timeout=10)  # fmt: skip
            else:
                side = random.choice(["BUY", "SELL"])
                response = session.post(web.url("/api/v1/orders"),
                                        json={"symbol": "BTC/USDT", "side": side,
                                              "type": "MARKET", "quantity": 0.001},
                                        timeout=10)  # fmt: skip
                if response.status_code == 201:
                    order_ids.append(response.json()["order"]["id"])
                    order_ids[:] = order_ids[-500:]
            counts[response.status_code] = counts.get(response.status_code, 0) + 1
            if timings is not None:
                timings.setdefault(kind, []).append(time.perf_counter() - sent_at)
        except requests.RequestException as error:
            counts[type(error).__name__] = counts.get(type(error).__name__, 0) + 1
        sent += 1
        time.sleep(max(0.0, sent / rate - (time.monotonic() - started)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=60)
    args = parser.parse_args()
    with bench_database() as url:
        web = WebServer(url, workers=2, LOG_LEVEL="warning", **OPEN_ACCESS)
        engine = start_worker(url)
        clients = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "ws_clients.py"), web.ws_url,
             "--clients", str(args.clients)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        stop = threading.Event()
        counts: dict = {}
        samples: list[dict] = []
        try:
            connected = json.loads(clients.stdout.readline())["ready"]
            requests.post(
                web.url("/api/v1/trade/start"),
                json={"symbol": "BTC/USDT", "initial_capital": 10**9},
                timeout=10,
            )
            requests.post(web.url("/api/v1/market/prices"),
                          json={"symbol": "BTC/USDT", "price": 65000}, timeout=10)  # fmt: skip
            load = threading.Thread(target=mixed_load, args=(web, args.rate, stop, counts))
            load.start()
            started = time.monotonic()
            pids = workers_of(web)
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                samples.append({"t": round(elapsed), **{str(p): rss_kib(p) for p in pids}})
                print(json.dumps(samples[-1]), flush=True)
                time.sleep(10)
            samples.append({"t": round(time.monotonic() - started),
                            **{str(p): rss_kib(p) for p in pids}})  # fmt: skip
            stop.set()
            load.join()
        finally:
            stop.set()
            clients.kill()
            engine.send_signal(signal.SIGTERM)
            engine.wait(timeout=15)
            web.stop()
    at_two = next(s for s in samples if s["t"] >= min(120, args.minutes * 60 / 5))
    last = samples[-1]
    growth = {
        pid: {"rss_mib_minute_2": round(at_two[pid] / 1024, 1),
              "rss_mib_end": round(last[pid] / 1024, 1),
              "growth": f"{(last[pid] / at_two[pid] - 1) * 100:.1f} %"}
        for pid in at_two if pid != "t"
    }  # fmt: skip
    print(json.dumps({"websocket_clients": connected, "minutes": args.minutes,
                      "responses": counts, "workers": growth}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
