"""Soak: the whole system under a steady mixed load for 10 minutes.

A real gunicorn (2 gevent workers, auth on), a real engine (simulated feed: ticks flow all the
time), a real agents process (the local reasoner: no network) and 200 WebSocket clients
(bench/ws_clients.py, signed in with a short-lived token). A steady mix of reads and writes
arrives at a fixed rate: order lists and details, positions, decisions, status, new MARKET
orders and manual ticks. Reported: the error rate, p50/p99 per kind of request, the events the
clients received, and the RSS of every process (each web worker, the engine, the agents) at
minute 1 and at the end, with the bound it is held to.

    python bench/soak.py                       # 10 minutes, 200 clients, 40 requests/s
    python bench/soak.py --minutes 2 --clients 50
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

import requests
from common import ROOT, bench_database, percentile
from memory import mixed_load, rss_kib, workers_of

from app.access import keys
from app.db import db
from tests.live import WebServer, start_worker

RSS_GROWTH_BOUND = 0.10  # at most 10 % between minute 1 and the end


def trader_key() -> str:
    _, key = keys.create_key(
        keys.KeyRequest(name=f"soak-{uuid.uuid4().hex[:6]}", role="trader",
                        rate_limit="1000000/minute", write_limit="1000000/minute",
                        ws_connections=10_000)
    )  # fmt: skip
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=40)
    args = parser.parse_args()
    with bench_database() as url:
        key = trader_key()
        db.close_all()
        env = {"LOG_LEVEL": "warning", "MARKET_FEED": "simulated"}
        web = WebServer(url, workers=2, **env)
        engine = start_worker(url, **env)
        agents = start_worker(url, command="agents", **env)
        headers = {"X-API-Key": key}
        requests.post(web.url("/api/v1/trade/start"), headers=headers, timeout=10,
                      json={"symbol": "BTC/USDT", "initial_capital": 10**9})  # fmt: skip
        token = requests.post(web.url("/api/v1/auth/token"), headers=headers, timeout=10).json()
        clients = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "ws_clients.py"),
             f"{web.ws_url}?token={token['token']}", "--clients", str(args.clients)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        stop = threading.Event()
        counts: dict = {}
        timings: dict[str, list[float]] = {}
        try:
            connected = json.loads(clients.stdout.readline())["ready"]
            load = threading.Thread(
                target=mixed_load, args=(web, args.rate, stop, counts, timings, headers)
            )
            load.start()
            started = time.monotonic()
            pids = {**{f"web worker {p}": p for p in workers_of(web)},
                    "engine": engine.pid, "agents": agents.pid}  # fmt: skip
            time.sleep(min(60, args.minutes * 60 / 5))
            at_start = {name: rss_kib(pid) for name, pid in pids.items()}
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(1)
            at_end = {name: rss_kib(pid) for name, pid in pids.items()}
            stop.set()
            load.join()
            clients.stdin.write("done\n")
            clients.stdin.flush()
            received = json.loads(clients.stdout.readline())
        finally:
            stop.set()
            if clients.poll() is None:
                clients.kill()
            for process in (engine, agents):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            web.stop()
    report(args, connected, counts, timings, received, at_start, at_end)


def report(args, connected, counts, timings, received, at_start, at_end) -> None:
    answered = sum(v for k, v in counts.items() if isinstance(k, int))
    failures = sum(v for k, v in counts.items() if not isinstance(k, int) or k >= 500)
    per_kind = {
        kind: {"requests": len(values),
               "p50_ms": round(statistics.median(values) * 1000, 1),
               "p99_ms": round(percentile(values, 0.99) * 1000, 1)}
        for kind, values in sorted(timings.items())
    }  # fmt: skip
    memory = {
        name: {"rss_mib_minute_1": round(at_start[name] / 1024, 1),
               "rss_mib_end": round(at_end[name] / 1024, 1),
               "growth": f"{(at_end[name] / at_start[name] - 1) * 100:.1f} %",
               "within_bound": at_end[name] <= at_start[name] * (1 + RSS_GROWTH_BOUND)}
        for name in at_start
    }  # fmt: skip
    events = received["events"]
    print(json.dumps({
        "minutes": args.minutes, "rate_per_second": args.rate,
        "websocket_clients": connected, "clients_closed": len(received["closed_codes"]),
        "events_per_client": {"min": min(events, default=0), "max": max(events, default=0)},
        "responses": {str(k): v for k, v in counts.items()},
        "error_rate": f"{failures / max(1, answered + failures) * 100:.2f} %",
        "latency": per_kind, "memory": memory,
        "rss_growth_bound": f"{RSS_GROWTH_BOUND:.0%}",
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
