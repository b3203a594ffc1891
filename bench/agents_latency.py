"""A slow model beside the exchange: manual fills and controls must not wait for it.

    python bench/agents_latency.py                   # 10 agent sessions, a 5 s model, 40 s
    python bench/agents_latency.py --sessions 10 --model-seconds 5 --seconds 40

A fake OpenAI-compatible model that answers after MODEL_SECONDS; SESSIONS agent sessions whose
history makes every one of them propose an entry on the next candle (so every one asks the
model), and one manual session. A real gunicorn web process, a real engine and a real agents
process (AGENT_CONCURRENCY 8). For SECONDS, a manual MARKET order is placed over HTTP every
200 ms (fill latency = the order's filled_at - placed_at, both stamped by the system), and every
2 s the manual session is paused and resumed (HTTP round trip each). Reported: fill latency
p50/p99/max, pause/resume p50/p99/max, model calls made, and how long the SESSIONS approvals
took from the first model request to the last approval (in model latencies).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import requests
from common import OPEN_ACCESS, ROOT, bench_database, percentile

from app.agents.market_view import bucket_start
from app.db import db
from app.models import ALL_TABLES, Decision, Order, utcnow
from app.runtime_config import update_config
from app.trading.market import record_tick
from app.trading.sessions import start_session
from tests.fake_llm import FakeLLM
from tests.live import WebServer
from tests.test_orchestrator import CANDLE, uptrend, write_candles


def summary(values: list[float]) -> dict:
    return {
        "p50_ms": round(percentile(values, 0.5) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "n": len(values),
    }


def run(database_url: str, sessions: int, model_seconds: float, seconds: float) -> dict:
    db.execute_sql(f"TRUNCATE {', '.join(ALL_TABLES)} CASCADE")
    update_config({"max_position_size": 0.5, "min_confidence": 0.55, "max_drawdown": 0.5})
    closes = uptrend()
    # History up to the start of the next candle, so every session decides on it.
    next_candle = bucket_start(utcnow(), CANDLE) + timedelta(seconds=CANDLE)
    for index in range(sessions):
        symbol = f"AGT{index}/USDT"
        start_session(symbol, Decimal(100_000), "PAPER")
        write_candles(symbol, closes, start=next_candle - timedelta(seconds=80 * CANDLE))
        record_tick(symbol, Decimal(repr(round(closes[-1], 2))))
    manual = start_session("BTC/USDT", Decimal(10**8), "PAPER")
    record_tick("BTC/USDT", Decimal(65000))
    model = FakeLLM(delay=model_seconds)
    web = WebServer(database_url, workers=1, LOG_LEVEL="warning", **OPEN_ACCESS)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MARKET_FEED": "manual",
        "LOG_LEVEL": "warning",
        "LLM_BASE_URL": model.base_url,
        "LLM_MODEL": "approve-primary",
        "LLM_FALLBACK_MODEL": "approve-fallback",
    }
    engine = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env)
    agents = subprocess.Popen([sys.executable, "-m", "app", "agents"], cwd=ROOT, env=env)
    http = requests.Session()
    controls: list[float] = []
    placed: list[str] = []
    first_call = None
    try:
        deadline = time.monotonic() + seconds
        next_control = time.monotonic() + 2
        body = {"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": 0.001}
        while time.monotonic() < deadline:
            if first_call is None and model.requests:
                first_call = utcnow()
            answer = http.post(web.url("/api/v1/orders"), json=body)
            if answer.status_code == 201:
                placed.append(answer.json()["order"]["id"])
            if time.monotonic() >= next_control:
                for action in ("pause", "resume"):
                    started = time.perf_counter()
                    http.post(
                        web.url(f"/api/v1/trade/{action}"), json={"session_id": str(manual.id)}
                    )
                    controls.append(time.perf_counter() - started)
                next_control += 2
            time.sleep(0.2)
        time.sleep(1)
        fills = [
            (filled - placed_at).total_seconds()
            for placed_at, filled in Order.select(Order.placed_at, Order.filled_at)
            .where(Order.id.in_(placed), Order.filled_at.is_null(False))
            .tuples()
        ]
        approvals = list(
            Decision.select(Decision.created_at)
            .where(Decision.decision_type == "risk_approval")
            .order_by(Decision.created_at)
            .tuples()
        )
    finally:
        for process in (agents, engine):
            process.send_signal(signal.SIGTERM)
        for process in (agents, engine):
            process.wait(timeout=60)
        web.stop()
        model.close()
    approvals_done = (
        (approvals[min(sessions, len(approvals)) - 1][0] - first_call).total_seconds()
        if approvals and first_call
        else None
    )
    return {
        "benchmark": "slow_model_beside_the_exchange",
        "agent_sessions": sessions,
        "model_seconds": model_seconds,
        "model_calls": len(model.requests),
        "approvals": len(approvals),
        "first_approvals_seconds": round(approvals_done, 2) if approvals_done else None,
        "first_approvals_in_model_latencies": (
            round(approvals_done / model_seconds, 2) if approvals_done else None
        ),
        "manual_orders_placed": len(placed),
        "manual_fill": summary(fills),
        "pause_resume": summary(controls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--model-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    with bench_database() as database_url:
        print(json.dumps(run(database_url, args.sessions, args.model_seconds, args.seconds)))


if __name__ == "__main__":
    main()
