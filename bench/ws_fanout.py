"""WebSocket fan-out benchmark: commit-to-client latency and delivery ratio on one web worker,
against a bare flask-sock + LISTEN handler (bench/bare_ws.py) in the same sitting.

Starts its own embedded PostgreSQL (or uses DATABASE_URL) and one gunicorn gevent worker,
connects N clients from a separate gevent process, then inserts real system_events rows (each
one a NOTIFY from its trigger) at a fixed rate. Each row carries its commit-side wall time; a
client measures receipt time minus that. The project's server and the bare one take turns,
run after run; the medians of the runs are compared.

    python bench/ws_fanout.py                      # 1000 clients, 50 events/s, 20 s, 3 runs
    python bench/ws_fanout.py --clients 1000 200 --rate 50 --seconds 20 --runs 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import psycopg2
import requests
from common import OPEN_ACCESS, ROOT, BareServer, bench_database, percentile

from app.db import connect_kwargs
from tests.live import WebServer


def run(database_url: str, clients: int, rate: float, seconds: float, bare: bool) -> dict:
    if bare:
        web = BareServer(database_url, "bare_ws:app", "/health", workers=1)
    else:
        web = WebServer(database_url, workers=1, LOG_LEVEL="warning", **OPEN_ACCESS)
    load = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "ws_clients.py"),
            web.ws_url,
            "--clients",
            str(clients),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(load.stdout.readline())["ready"]
        time.sleep(6)  # presence rows refresh every 5 s
        reported = None
        if not bare:
            status = requests.get(web.url("/api/v1/status"), timeout=5).json()
            reported = status["websocket"]["connected_clients"]
        conn = psycopg2.connect(**connect_kwargs(database_url))
        conn.autocommit = True
        sent = 0
        started = time.monotonic()
        with conn.cursor() as cursor:
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(elapsed * rate) + 1
                while sent < due:
                    cursor.execute(
                        "INSERT INTO system_events (type, data) VALUES ('system_status', "
                        "jsonb_build_object('status', 'bench', 'message', 'fan-out benchmark', "
                        "'n', %s, 't', %s))",
                        (sent, time.time()),
                    )
                    sent += 1
                time.sleep(max(0.0, (sent / rate) - (time.monotonic() - started)))
        conn.close()
        time.sleep(2)  # let the last events arrive
        load.stdin.write("done\n")
        load.stdin.flush()
        measured = json.loads(load.stdout.readline())
    finally:
        load.kill()
        web.stop()
    latencies = measured["latencies"]
    expected = sent * ready
    return {
        "clients": clients,
        "connected": ready,
        "server": "bare" if bare else "project",
        "connected_clients_reported": reported,
        "events": sent,
        "rate_per_s": rate,
        "deliveries": len(latencies),
        "delivery_ratio": round(len(latencies) / expected, 4) if expected else 0.0,
        "clients_with_every_event": sum(1 for n in measured["received"] if n == sent),
        "disconnected": len(measured["closed_codes"]),
        "latency_ms_p50": round(percentile(latencies, 0.50) * 1000, 1) if latencies else None,
        "latency_ms_p99": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
        "latency_ms_max": round(max(latencies) * 1000, 1) if latencies else None,
        "latency_ms_mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="*", default=[1000])
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with bench_database() as database_url:
        for clients in args.clients:
            results: dict[str, list[dict]] = {"project": [], "bare": []}
            for _ in range(args.runs):
                for bare in (False, True):
                    result = run(database_url, clients, args.rate, args.seconds, bare)
                    results[result["server"]].append(result)
                    print(json.dumps(result), flush=True)
            summary = {
                server: {
                    key: statistics.median(r[key] for r in runs)
                    for key in ("latency_ms_p50", "latency_ms_p99", "latency_ms_max",
                                "delivery_ratio")
                }
                for server, runs in results.items()
            }  # fmt: skip
            p99_ratio = summary["project"]["latency_ms_p99"] / summary["bare"]["latency_ms_p99"]
            ratio = round(p99_ratio, 2)
            print(json.dumps({"clients": clients, "medians": summary,
                              "p99_project_over_bare": ratio}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
