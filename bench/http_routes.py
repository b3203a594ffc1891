"""Read and write routes against the bare handler doing the same work, side by side.

Three gunicorn servers (gevent, 2 workers each) on one seeded database:

- **bare**: ``bench/bare_http.py``, plain Flask + psycopg2 running the same SQL and writing the
  same JSON (checked before anything is measured);
- **real**: the project with auth on (an API key on every request) and rate limits off;
- **real, auth off**: the same with ``AUTH_DISABLED=true``, to report what auth costs.

wrk loads them in turn, route after route, round after round, so every configuration sees the
same machine state. The ratio per route is real ÷ bare (medians).

Throughput on this machine is bounded by CPU, shared by the server, PostgreSQL and wrk. The
second table says where it went: CPU time per request of the server's processes (gunicorn
and its workers) and of PostgreSQL's (every local ``postgres`` process: the backends, the WAL
writer, autovacuum), read from /proc around each run (medians). With DATABASE_URL pointing at
another machine the PostgreSQL column is empty.

    python bench/http_routes.py            # 3 rounds of 5 s per route and server, wrk -c64
    python bench/http_routes.py --rounds 5 --seconds 10 --routes order_detail order_list

Needs ``wrk`` (Debian: apt install wrk).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import uuid
from typing import NamedTuple

import requests
from common import OPEN_ACCESS, BareServer, bench_database, workers_of

from app.access import keys
from app.db import db
from app.settings import VERSION
from tests.live import WebServer

SEED_SQL = """
INSERT INTO trading_sessions (id, mode, symbol, exchange, status, initial_capital, cash,
                              peak_equity, day_start_equity, day_start_date, started_at)
SELECT gen_random_uuid(), 'PAPER', 'S' || n || '/USDT', 'PAPER', 'RUNNING', 100000, 100000,
       100000, 100000, current_date, now() - interval '1 day'
  FROM generate_series(1, 10) AS n;
INSERT INTO trading_sessions (id, mode, symbol, exchange, status, initial_capital, cash,
                              peak_equity, day_start_equity, day_start_date, started_at)
VALUES (gen_random_uuid(), 'PAPER', 'BTC/USDT', 'PAPER', 'RUNNING', 100000, 100000, 100000,
        100000, current_date, now());

-- 5,000 orders per session: one in five NEW and resting, the others filled.
INSERT INTO orders (id, session_id, symbol, exchange, side, type, status, price, quantity,
                    executed_quantity, executed_quote_quantity, time_in_force, source,
                    placed_at, filled_at, accepted_at, created_at, updated_at)
SELECT gen_random_uuid(), s.id, s.symbol, 'PAPER', CASE WHEN n % 2 = 0 THEN 'BUY' ELSE 'SELL' END,
       'LIMIT', CASE WHEN n % 5 = 0 THEN 'NEW' ELSE 'FILLED' END, 100 + n % 97, 0.5 + n % 7,
       CASE WHEN n % 5 = 0 THEN 0 ELSE 0.5 + n % 7 END,
       CASE WHEN n % 5 = 0 THEN 0 ELSE (0.5 + n % 7) * (100 + n % 97) END, 'GTC', 'agent',
       now() - make_interval(secs => n * 7), CASE WHEN n % 5 = 0 THEN NULL ELSE now() END,
       now() - make_interval(secs => n * 7), now() - make_interval(secs => n * 7), now()
  FROM trading_sessions AS s, generate_series(1, 500) AS n
 WHERE s.symbol <> 'BTC/USDT';

-- 21 positions per session: 20 closed, 1 open.
INSERT INTO positions (id, session_id, symbol, exchange, side, status, entry_price, exit_price,
                       quantity, entry_time, exit_time, stop_loss, take_profit, realized_pnl,
                       unrealized_pnl, fees, entry_reason, exit_reason, created_at, updated_at)
SELECT gen_random_uuid(), s.id, s.symbol, 'PAPER', 'LONG', CASE WHEN n = 21 THEN 'OPEN'
       ELSE 'CLOSED' END, 100 + n, CASE WHEN n = 21 THEN NULL ELSE 101 + n END, 2,
       now() - make_interval(mins => 100 - n), CASE WHEN n = 21 THEN NULL ELSE now() END,
       90, 120, 2.5, 0, 0.1, 'signal: RSI oversold', CASE WHEN n = 21 THEN NULL
       ELSE 'take profit' END, now(), now()
  FROM trading_sessions AS s, generate_series(1, 21) AS n
 WHERE s.symbol <> 'BTC/USDT';

INSERT INTO agents (name, status, last_seen_at, created_at, updated_at)
VALUES ('trend-follower', 'active', now(), now(), now());
-- 5,000 decisions with a reasoning, a context document and an embedding.
INSERT INTO llm_decisions (id, session_id, agent_name, symbol, decision_type, decision,
                           confidence, reasoning, context, prompt, response, prompt_embedding,
                           prompt_tokens, completion_tokens, model, outcome, actual_pnl,
                           latency_ms, cost, created_at, resolved_at)
SELECT gen_random_uuid(), s.id, 'trend-follower', s.symbol, 'signal',
       (ARRAY['BUY', 'SELL', 'HOLD'])[1 + n % 3], 0.5 + (n % 50) / 100.0,
       'EMA(12) crossed above EMA(26) with RSI at ' || (30 + n % 40) || '; volume confirms',
       jsonb_build_object('rsi', 30 + n % 40, 'ema_fast', 100 + n % 9, 'ema_slow', 99,
                          'trend', 'up'),
       'Market: ' || s.symbol || ' closes rising ' || n, '{"decision": "BUY"}',
       ARRAY(SELECT sin(n * k + k) FROM generate_series(1, 16) AS k)::vector,
       420, 60, 'gpt-4o-mini', (ARRAY['PENDING', 'SUCCESS', 'FAILURE', 'SUCCESS'])[1 + n % 4],
       CASE WHEN n % 4 = 2 THEN -7.25 WHEN n % 4 <> 0 THEN 12.5 END, 800 + n % 300,
       0.00021, now() - make_interval(secs => n * 3), CASE WHEN n % 4 = 0 THEN NULL
       ELSE now() END
  FROM trading_sessions AS s, generate_series(1, 500) AS n
 WHERE s.symbol <> 'BTC/USDT';

INSERT INTO engine_leader (id, epoch, holder, heartbeat_at) VALUES (1, 3, 'bench-host:4242', now());
INSERT INTO supervised_processes (name, pid, restarts, last_exit_code, last_restart_at)
VALUES ('agents', 4243, 0, NULL, NULL), ('engine', 4244, 1, -9, now()),
       ('web', 4245, 0, NULL, NULL);
ANALYZE;
"""

ORDER_BODY = (
    '{"symbol": "BTC/USDT", "side": "BUY", "type": "LIMIT", "price": 1000, "quantity": 0.01}'
)


def seed() -> dict:
    """The seeded rows the routes read, and a trader key no limit will stop."""
    with db.atomic(), db.cursor() as cursor:
        cursor.execute(SEED_SQL)  # no parameters: the % in it are SQL's modulo
    order_id = db.execute_sql("SELECT id FROM orders WHERE status = 'NEW' LIMIT 1").fetchone()[0]
    decision_id = db.execute_sql("SELECT id FROM llm_decisions LIMIT 1").fetchone()[0]
    _, key = keys.create_key(
        keys.KeyRequest(name=f"bench-{uuid.uuid4().hex[:6]}", role="trader",
                        rate_limit="100000000/minute", write_limit="100000000/minute")
    )  # fmt: skip
    return {"order_id": order_id, "decision_id": decision_id, "key": key}


def routes(seeded: dict) -> dict[str, str]:
    return {
        "order_detail": f"/api/v1/orders/{seeded['order_id']}",
        "order_list": "/api/v1/orders?status=NEW&limit=50",
        "position_list": "/api/v1/positions?status=all",
        "decision_list": "/api/v1/decisions",
        "decision_detail": f"/api/v1/decisions/{seeded['decision_id']}",
        "decision_stats": "/api/v1/decisions/stats",
        "status": "/api/v1/status",
    }


VARYING = ("uptime", "heartbeat_age_seconds")


def same_json(left, right, path: str = "") -> list[str]:
    """Differences between two JSON documents; floats compared to 1e-6, VARYING keys ignored."""
    if isinstance(left, dict) and isinstance(right, dict):
        if list(left) != list(right):
            return [f"{path}: keys {list(left)} != {list(right)}"]
        return [
            d for k in left if k not in VARYING for d in same_json(left[k], right[k], f"{path}.{k}")
        ]
    if isinstance(left, list) and isinstance(right, list):
        if len(left) != len(right):
            return [f"{path}: {len(left)} items != {len(right)}"]
        return [d for i, (a, b) in enumerate(zip(left, right, strict=True))
                for d in same_json(a, b, f"{path}[{i}]")]  # fmt: skip
    if isinstance(left, int | float) and isinstance(right, int | float):
        return (
            []
            if math.isclose(left, right, rel_tol=1e-6, abs_tol=1e-9)
            else [f"{path}: {left} != {right}"]
        )
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of one process so far (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds spent by one server (gunicorn and its workers) and by PostgreSQL's
    processes since the meter was made."""

    def __init__(self, server):
        self.server = [server.process.pid, *workers_of(server)]
        found = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True)
        self.postgres = [int(pid) for pid in found.stdout.split()]
        self.started = self.read()

    def read(self) -> tuple[float, float]:
        return (sum(map(_cpu_seconds, self.server)), sum(map(_cpu_seconds, self.postgres)))

    def used(self) -> tuple[float, float]:
        """CPU seconds (server, PostgreSQL) since the meter was made."""
        server, postgres = self.read()
        return server - self.started[0], postgres - self.started[1]


class Run(NamedTuple):
    """One wrk run: requests per second, and CPU µs per request of the server and of
    PostgreSQL (None when the run was not metered)."""

    rate: float
    server_us: float | None = None
    postgres_us: float | None = None


def wrk(
    url: str,
    key: str | None,
    seconds: int,
    connections: int,
    script: str | None = None,
    warm_up: bool = False,
    metered=None,
) -> Run:
    """What wrk sustained; any non-2xx answer or timeout invalidates the run. With
    ``metered`` (a server), also the CPU per request of that server and of PostgreSQL."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    if key:
        command += ["-H", f"X-API-Key: {key}"]
    if script:
        command += ["-s", script]
    meter = CpuMeter(metered) if metered else None
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if not warm_up and ("Non-2xx" in output or "Socket errors" in output):
        raise SystemExit(f"errors during the run of {url}:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    if meter is None:
        return Run(rate)
    requests_done = int(re.search(r"(\d+) requests in", output).group(1))
    server, postgres = (used * 1e6 / requests_done for used in meter.used())
    return Run(rate, server, postgres)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--routes", nargs="*", help="only these (names as printed); default all")
    parser.add_argument("--skip-write", action="store_true", help="leave POST /orders out")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt install wrk)")
    with bench_database() as url:
        seeded = seed()
        db.close_all()
        env = {"LOG_LEVEL": "warning", "ORDER_BACKLOG_SECONDS": "1000000000"}
        servers = {
            "bare": BareServer(url, "bare_http:app", "/api/v1/status", BARE_VERSION=VERSION),
            "real": WebServer(url, workers=2, RATE_LIMIT_ENABLED="false", **env),
            "real, auth off": WebServer(url, workers=2, **OPEN_ACCESS, **env),
        }
        key = seeded["key"]
        credentials = {"bare": None, "real": key, "real, auth off": None}
        chosen = {k: v for k, v in routes(seeded).items() if not args.routes or k in args.routes}
        try:
            for name, path in chosen.items():
                bare = requests.get(servers["bare"].url(path), timeout=10)
                real = requests.get(
                    servers["real"].url(path), headers={"X-API-Key": key}, timeout=10
                )
                differences = same_json(real.json(), bare.json())
                if real.status_code != 200 or bare.status_code != 200 or differences:
                    shown = "\n".join(differences[:10])
                    raise SystemExit(
                        f"{name}: the bare handler does not answer the same:\n{shown}\n"
                        f"{real.text[:500]}"
                    )
            runs: dict[str, dict[str, list[Run]]] = {r: {s: [] for s in servers} for r in chosen}
            for name, server in servers.items():  # warm-up: pools, caches, imports
                for path in chosen.values():
                    wrk(server.url(path), credentials[name], 2, args.connections, warm_up=True)
            for _ in range(args.rounds):
                for route, path in chosen.items():
                    for name, server in servers.items():
                        run = wrk(server.url(path), credentials[name], args.seconds,
                                  args.connections, metered=server)  # fmt: skip
                        runs[route][name].append(run)
            if not args.skip_write and (not args.routes or "create_order" in args.routes):
                runs["create_order"] = write_rates(servers, credentials, args)
                runs["create_order, bare audited too"] = write_rates(
                    servers, credentials, args, bare_query="?audited=1"
                )
        finally:
            for server in servers.values():
                server.stop()
    report(runs)


def write_rates(
    servers: dict, credentials: dict, args, bare_query: str = ""
) -> dict[str, list[Run]]:
    """POST /api/v1/orders: a resting LIMIT order per request (the engine is not running).
    ``bare_query`` selects the bare handler's variant (``?audited=1``: with the audit row)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = '{ORDER_BODY}'\n"
        )
    runs: dict[str, list[Run]] = {name: [] for name in servers}
    try:
        for _ in range(args.rounds):
            for name, server in servers.items():
                url = server.url("/api/v1/orders" + (bare_query if name == "bare" else ""))
                runs[name].append(wrk(url, credentials[name], args.seconds, args.connections,
                                      script.name, metered=server))  # fmt: skip
    finally:
        os.unlink(script.name)
    return runs


def report(runs: dict) -> None:
    table = {}
    for route, by_server in runs.items():
        rates = {name: [run.rate for run in values] for name, values in by_server.items()}
        median = {name: statistics.median(values) for name, values in rates.items()}
        table[route] = {
            "bare": [round(v) for v in rates["bare"]],
            "real": [round(v) for v in rates["real"]],
            "real_auth_off": [round(v) for v in rates["real, auth off"]],
            "ratio": round(median["real"] / median["bare"], 2),
            "ratio_auth_off": round(median["real, auth off"] / median["bare"], 2),
            "auth_cost": f"{(1 - median['real'] / median['real, auth off']) * 100:.1f} %",
            "cpu_us_per_request": {
                name: {
                    "server": round(statistics.median(run.server_us for run in runs_of)),
                    "postgres": round(statistics.median(run.postgres_us for run in runs_of)),
                }
                for name, runs_of in by_server.items()
                if name in ("bare", "real")
            },
        }
    print(json.dumps(table, indent=2))
    print("\n| route | bare req/s | real req/s (auth on) | ratio | auth off ratio | auth cost |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for route, row in table.items():
        print(f"| {route} | {statistics.median(row['bare'])} | {statistics.median(row['real'])} "
              f"| {row['ratio']} | {row['ratio_auth_off']} | {row['auth_cost']} |")  # fmt: skip
    print("\nCPU µs per request (medians):\n")
    print("| route | server, bare | server, real | real ÷ bare | PostgreSQL, bare "
          "| PostgreSQL, real |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for route, row in table.items():
        cpu = row["cpu_us_per_request"]
        server_ratio = cpu["real"]["server"] / max(cpu["bare"]["server"], 1)
        print(f"| {route} | {cpu['bare']['server']} | {cpu['real']['server']} "
              f"| {server_ratio:.2f} | {cpu['bare']['postgres'] or '—'} "
              f"| {cpu['real']['postgres'] or '—'} |")  # fmt: skip


if __name__ == "__main__":
    main()
