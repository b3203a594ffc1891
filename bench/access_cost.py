"""What access control costs: GET /api/v1/orders/{id} throughput with auth off, auth on, and
auth plus rate limits on.

Three gunicorn servers (2 gevent workers each) run side by side on one migrated database; wrk
loads them in turn, round after round, so all three see the same machine state. The key has
limits far above the load, so every request is counted and none is refused.

    python bench/access_cost.py                    # 3 rounds of 10 s per configuration
    python bench/access_cost.py --rounds 5 --seconds 15 --connections 64

Needs ``wrk`` (Debian: apt install wrk).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import uuid
from decimal import Decimal

from common import bench_database

from app.access import keys
from app.db import db
from app.models import Order, TradingSession
from tests.live import WebServer

CONFIGURATIONS = {
    "auth off, limits off": {"AUTH_DISABLED": "true", "RATE_LIMIT_ENABLED": "false"},
    "auth on, limits off": {"RATE_LIMIT_ENABLED": "false"},
    "auth on, limits on": {},
}


def seed() -> tuple[str, str]:
    """One session with one resting order; an admin key that no limit here will stop."""
    session = TradingSession.create(
        mode="PAPER", symbol="BTC/USDT", exchange="PAPER", initial_capital=Decimal(10_000)
    )
    order = Order.create(
        id=uuid.uuid4(), session=session, symbol="BTC/USDT", exchange="PAPER", side="BUY",
        type="LIMIT", price=Decimal(60_000), quantity=Decimal("0.01"), status="NEW",
    )  # fmt: skip
    _, key = keys.create_key(
        keys.KeyRequest(name=f"bench-{uuid.uuid4().hex[:6]}", role="viewer",
                        rate_limit="100000000/minute", write_limit="100000000/minute")
    )  # fmt: skip
    return str(order.id), key


def wrk(url: str, key: str, seconds: int, connections: int, warm_up: bool = False) -> float:
    """Requests per second wrk sustained (non-2xx answers make a measured run invalid)."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-H", f"X-API-Key: {key}", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if "Non-2xx" in output and not warm_up:
        raise SystemExit(f"non-2xx answers during the run:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt install wrk)")
    with bench_database() as url:
        order_id, key = seed()
        db.close_all()
        servers = {
            name: WebServer(url, workers=2, LOG_LEVEL="warning", **env)
            for name, env in CONFIGURATIONS.items()
        }
        try:
            rates: dict[str, list[float]] = {name: [] for name in servers}
            for server in servers.values():  # warm-up: pools and caches
                wrk(server.url(f"/api/v1/orders/{order_id}"), key, 5, args.connections, True)
            for _ in range(args.rounds):
                for name, server in servers.items():
                    path = f"/api/v1/orders/{order_id}"
                    rates[name].append(wrk(server.url(path), key, args.seconds, args.connections))
        finally:
            for server in servers.values():
                server.stop()
    median = {name: statistics.median(values) for name, values in rates.items()}
    off, auth, limited = (median[name] for name in CONFIGURATIONS)
    print(json.dumps({
        "requests_per_second": {name: [round(v) for v in values] for name, values in rates.items()},
        "median": {name: round(value) for name, value in median.items()},
        "auth_cost": f"{(1 - auth / off) * 100:.1f} %",
        "limits_cost": f"{(1 - limited / auth) * 100:.1f} %",
        "both": f"{(1 - limited / off) * 100:.1f} %",
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
