"""Similarity search at scale: GET /api/v1/decisions/{id}/similar over a million decisions.

The decisions are not i.i.d. noise. Eight symbols follow price paths whose drift and volatility
switch between regimes (trending up, trending down, ranging, turbulent) as a Markov chain; four
agents decide on every step, and each decision's embedding is the market context its agent saw:
returns over 1-60 steps, volatility, an RSI-like ratio, EMA spreads, volume and drawdown, seen
through the agent's own small distortion, plus noise. Neighbours are therefore clustered by
regime and correlated in time, as they are in a real decision log.

They are loaded with COPY, the NOTIFY trigger off and the HNSW index dropped, then indexed.
Latency is measured over HTTP on a real gunicorn (one client, keep-alive); recall@10 against
the exact answer, computed here by brute force over the same vectors.

    python bench/similar.py                          # 1,000,000 decisions, 500 queries a case
    python bench/similar.py --decisions 200000 --queries 200
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid

import numpy as np
import requests
from common import OPEN_ACCESS, bench_database, percentile

from app.db import db
from tests.live import WebServer

SYMBOLS = [f"{name}/USDT" for name in ("BTC", "ETH", "SOL", "BNB", "XRP", "ADA", "DOGE", "AVAX")]
AGENTS = ("trend-follower", "mean-reverter", "breakout", "risk-manager")
# Drift and volatility per step of each regime, and the chance of staying in it.
REGIMES = np.array([[4e-4, 0.004], [-4e-4, 0.004], [0.0, 0.002], [0.0, 0.012]])
STAY = 0.995
HNSW_INDEX = (
    "CREATE INDEX llm_decisions_embedding ON llm_decisions "
    "USING hnsw (prompt_embedding vector_cosine_ops)"
)


def market_features(steps: int, rng: np.random.Generator) -> np.ndarray:
    """Sixteen context features per step of one symbol's regime-switching price path."""
    regime = np.empty(steps, dtype=int)
    regime[0] = 2
    switches = rng.random(steps) > STAY
    jumps = rng.integers(0, 4, steps)
    for step in range(1, steps):
        regime[step] = jumps[step] if switches[step] else regime[step - 1]
    drift, volatility = REGIMES[regime, 0], REGIMES[regime, 1]
    returns = drift + volatility * rng.standard_normal(steps)
    log_price = np.cumsum(returns)
    volume = np.exp(rng.normal(0, 0.3, steps) + 40 * volatility)

    def lagged(values, lag):
        shifted = np.roll(values, lag)
        shifted[:lag] = values[0]
        return values - shifted

    def ema(values, span):
        alpha, out = 2 / (span + 1), np.empty_like(values)
        out[0] = values[0]
        for step in range(1, len(values)):
            out[step] = alpha * values[step] + (1 - alpha) * out[step - 1]
        return out

    def rolling_std(values, window):
        padded = np.concatenate([np.full(window - 1, values[0]), values])
        view = np.lib.stride_tricks.sliding_window_view(padded, window)
        return view.std(axis=1)

    gains = ema(np.clip(returns, 0, None), 14)
    losses = ema(np.clip(-returns, 0, None), 14)
    features = np.column_stack([
        lagged(log_price, 1), lagged(log_price, 5), lagged(log_price, 20), lagged(log_price, 60),
        rolling_std(returns, 20), rolling_std(returns, 60),
        gains / (gains + losses + 1e-12) - 0.5,
        ema(log_price, 12) - ema(log_price, 26), log_price - ema(log_price, 50),
        np.log(volume) - ema(np.log(volume), 20),
        log_price - np.maximum.accumulate(log_price),
        np.sign(lagged(log_price, 20)) * rolling_std(returns, 20),
        drift * 1e3, volatility * 1e2,
        ema(returns, 5) * 1e2, ema(np.abs(returns), 20) * 1e2,
    ])  # fmt: skip
    return (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-12)


def generate(total: int, seed: int = 7) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    """Ids, unit embeddings, symbols and agents of ``total`` decisions."""
    rng = np.random.default_rng(seed)
    distortions = [np.eye(16) + rng.normal(0, 0.15, (16, 16)) for _ in AGENTS]
    per_symbol = -(-total // (len(SYMBOLS) * len(AGENTS)))
    vectors, symbols, agents = [], [], []
    for symbol in SYMBOLS:
        context = market_features(per_symbol, rng)
        for agent, distortion in zip(AGENTS, distortions, strict=True):
            seen = context @ distortion + rng.normal(0, 0.25, context.shape)
            vectors.append(seen)
            symbols += [symbol] * per_symbol
            agents += [agent] * per_symbol
    embeddings = np.vstack(vectors)[:total].astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    ids = [str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(total)]
    return ids, embeddings, symbols[:total], agents[:total]


def load(ids, embeddings, symbols, agents) -> dict:
    """COPY the decisions in (trigger off, HNSW dropped), then build the index."""
    timings = {}
    with db.connection_context():
        for agent in AGENTS:
            db.execute_sql("INSERT INTO agents (name) VALUES (%s) ON CONFLICT DO NOTHING", (agent,))
        db.execute_sql("DROP INDEX IF EXISTS llm_decisions_embedding")
        db.execute_sql("ALTER TABLE llm_decisions DISABLE TRIGGER llm_decisions_notify")
        started = time.perf_counter()
        cursor = db.cursor()
        chunk = 100_000
        decisions = ("BUY", "SELL", "HOLD")
        for start in range(0, len(ids), chunk):
            buffer = io.StringIO()
            for row in range(start, min(start + chunk, len(ids))):
                vector = ",".join(f"{x:.6f}" for x in embeddings[row])
                # created_at: one step a minute, newest last.
                buffer.write(
                    f"{ids[row]}\t{agents[row]}\t{symbols[row]}\tsignal\t{decisions[row % 3]}\t"
                    f"0.7\tbench\t[{vector}]\tbench-model\t"
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(1.7e9 + row * 60))}+00\n"
                )
            buffer.seek(0)
            cursor.copy_expert(
                "COPY llm_decisions (id, agent_name, symbol, decision_type, decision, "
                "confidence, reasoning, prompt_embedding, model, created_at) FROM STDIN",
                buffer,
            )
        db.execute_sql("ALTER TABLE llm_decisions ENABLE TRIGGER llm_decisions_notify")
        timings["copy_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        db.execute_sql("SET maintenance_work_mem = '1GB'")
        db.execute_sql(HNSW_INDEX)
        timings["hnsw_build_seconds"] = round(time.perf_counter() - started, 1)
        db.execute_sql("VACUUM ANALYZE llm_decisions")
    return timings


def exact_top(embeddings, mask, reference: int, k: int) -> set[int]:
    """The k nearest rows by cosine distance (unit vectors: the largest dot products)."""
    scores = embeddings @ embeddings[reference]
    scores[reference] = -np.inf
    if mask is not None:
        scores[~mask] = -np.inf
    top = np.argpartition(-scores, k)[:k]
    return set(top.tolist())


def measure(web, ids, embeddings, cases: dict, queries: int, rng) -> dict:
    session = requests.Session()
    results = {}
    for name, (query, mask) in cases.items():
        candidates = np.arange(len(ids)) if mask is None else np.flatnonzero(mask)
        references = rng.choice(candidates, size=min(queries, len(candidates)), replace=False)
        latencies, answers = [], []
        for reference in references:
            url = web.url(f"/api/v1/decisions/{ids[reference]}/similar?limit=10{query}")
            started = time.perf_counter()
            response = session.get(url, timeout=30)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            answers.append({item["id"] for item in response.json()["similar"]})
        # Only after the timed requests: numpy's threads would otherwise share the CPU with
        # the server while it answers.
        recalls = [
            len(found & {ids[row] for row in exact_top(embeddings, mask, reference, 10)}) / 10
            for reference, found in zip(references, answers, strict=True)
        ]
        results[name] = {
            "matching_decisions": len(candidates),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
            "recall_at_10": round(float(np.mean(recalls)), 4),
        }
        print(json.dumps({name: results[name]}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument(
        "--reuse", action="store_true",
        help="with DATABASE_URL: keep decisions a previous run loaded there (same seed)",
    )  # fmt: skip
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    started = time.perf_counter()
    ids, embeddings, symbols, agents = generate(args.decisions)
    print(json.dumps({"generated": len(ids), "seconds": round(time.perf_counter() - started, 1)}))
    symbols_array, agents_array = np.array(symbols), np.array(agents)
    # A rare symbol: a few hundred decisions, answered by the exact path.
    rare = rng.choice(len(ids), size=400, replace=False)
    for row in rare:
        symbols[row] = "RARE/USDT"
    symbols_array[rare] = "RARE/USDT"
    with bench_database() as url:
        loaded = db.execute_sql("SELECT count(*) FROM llm_decisions").fetchone()[0]
        if not (args.reuse and loaded == len(ids)):
            db.execute_sql("TRUNCATE llm_decisions CASCADE")
            print(json.dumps(load(ids, embeddings, symbols, agents)), flush=True)
        db.close_all()
        web = WebServer(url, workers=1, LOG_LEVEL="warning", **OPEN_ACCESS)
        try:
            cases = {
                "unfiltered": ("", None),
                "symbol=ETH/USDT": ("&symbol=ETH/USDT", symbols_array == "ETH/USDT"),
                "agent_name=breakout": ("&agent_name=breakout", agents_array == "breakout"),
                "symbol=RARE/USDT": ("&symbol=RARE/USDT", symbols_array == "RARE/USDT"),
            }
            measure(web, ids, embeddings, {"warm-up": ("", None)}, 100, rng)
            results = measure(web, ids, embeddings, cases, args.queries, rng)
        finally:
            web.stop()
    print(json.dumps({"decisions": len(ids), "results": results}, indent=2))


if __name__ == "__main__":
    main()
