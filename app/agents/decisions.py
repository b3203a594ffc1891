"""Decision log: recording, filtering, pgvector similarity and aggregate statistics."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from peewee import SQL, EnclosedNodeList, NodeList, fn

from app.agents.registry import Heartbeat, record_heartbeat
from app.db import db
from app.errors import NotFound
from app.models import (
    BUILT_IN_DECISION_TYPES,
    DECISION_OUTCOMES,
    Decision,
    MarketPrice,
    TradingSession,
    utcnow,
)
from app.pagination import Listing, Page
from app.process_metrics import DECISIONS
from app.runtime_config import trading_rules
from app.statements import CompiledSelect, text_uuids

# Columns a list needs; prompt, response and the embedding are fetched only for the detail view.
LIST_COLUMNS = (
    Decision.id,
    Decision.session,
    Decision.agent_name,
    Decision.symbol,
    Decision.decision_type,
    Decision.decision,
    Decision.confidence,
    Decision.reasoning,
    Decision.context,
    Decision.prompt_tokens,
    Decision.completion_tokens,
    Decision.model,
    Decision.outcome,
    Decision.actual_pnl,
    Decision.latency_ms,
    Decision.cost,
    Decision.created_at,
    Decision.resolved_at,
)


@dataclass(frozen=True)
class DecisionFilter:
    symbol: str | None = None
    decision_type: str | None = None
    outcome: str | None = None
    model: str | None = None
    agent_name: str | None = None
    session_id: uuid.UUID | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None

    def values(self) -> dict:
        """The filters by condition name (None: not filtered)."""
        return asdict(self)


# Every filter of the decision log, in the order their parameters are passed.
CONDITIONS = {
    "symbol": lambda p: Decision.symbol == p,
    "decision_type": lambda p: Decision.decision_type == p,
    "outcome": lambda p: Decision.outcome == p,
    "model": lambda p: Decision.model == p,
    "agent_name": lambda p: Decision.agent_name == p,
    "session_id": lambda p: Decision.session == p,
    "from_date": lambda p: Decision.created_at >= p,
    "to_date": lambda p: Decision.created_at <= p,
}
DECISION_LIST = CompiledSelect(
    lambda: Decision.select(*text_uuids(*LIST_COLUMNS)).order_by(
        Decision.created_at.desc(), Decision.id
    ),
    CONDITIONS,
)
DECISION_DETAIL = CompiledSelect(
    lambda: Decision.select(
        *text_uuids(*LIST_COLUMNS),
        Decision.prompt,
        Decision.response,
        # A list of floats straight from the driver, not a numpy array built per row.
        Decision.prompt_embedding.cast("real[]").alias("prompt_embedding"),
    ),
    {"id": lambda p: Decision.id == p},
)
_resolved = Decision.outcome.in_(("SUCCESS", "FAILURE"))
_BREAKDOWNS = {
    "by_outcome": Decision.outcome,
    "by_decision_type": Decision.decision_type,
    "by_model": Decision.model,
}
# The totals and the three breakdowns in one scan: GROUPING SETS ((), (outcome),
# (decision_type), (model)). GROUPING(...) tells the rows apart: 7 is the grand total, and
# 3, 5, 6 are the breakdowns by outcome, decision_type and model (bit set = not grouped by).
DECISION_STATS = CompiledSelect(
    lambda: Decision.select(
        *_BREAKDOWNS.values(),
        fn.GROUPING(*_BREAKDOWNS.values()).alias("grouping"),
        fn.COUNT(Decision.id).alias("total"),
        fn.AVG(Decision.confidence).alias("avg_confidence"),
        fn.COUNT(Decision.id).filter(Decision.outcome == "SUCCESS").alias("successes"),
        fn.COUNT(Decision.id).filter(_resolved).alias("resolved"),
        fn.AVG(Decision.actual_pnl).alias("avg_pnl"),
        fn.COALESCE(fn.SUM(Decision.cost), 0).alias("total_cost"),
        fn.AVG(Decision.latency_ms).alias("avg_latency_ms"),
    ).group_by(
        NodeList(
            (
                SQL("GROUPING SETS"),
                EnclosedNodeList(
                    [EnclosedNodeList([])]
                    + [EnclosedNodeList([column]) for column in _BREAKDOWNS.values()]
                ),
            )
        )
    ),
    CONDITIONS,
)
_GROUPING = {7: "totals", 3: "by_outcome", 5: "by_decision_type", 6: "by_model"}


@dataclass
class NewDecision:
    agent_name: str
    symbol: str
    decision_type: str
    decision: str
    confidence: Decimal
    model: str
    reasoning: str = ""
    context: dict = field(default_factory=dict)
    prompt: str | None = None
    response: str | None = None
    prompt_embedding: list[float] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    cost: Decimal = Decimal(0)
    session_id: uuid.UUID | None = None
    outcome: str = "PENDING"
    actual_pnl: Decimal | None = None
    reference_price: Decimal | None = None
    resolve_after: datetime | None = None
    candle_at: datetime | None = None


def record_decision(new: NewDecision) -> Decision:
    """Store a decision; recording counts as a heartbeat from its agent.

    A decision without a reference price gets the symbol's latest price, and one that predicts a
    move (BUY, SELL, HOLD) without a judgment time gets the configured horizon, so decisions from
    outside agents are judged like the engine's own.
    """
    if new.reference_price is None:
        latest = MarketPrice.get_or_none(MarketPrice.symbol == new.symbol)
        new.reference_price = latest.price if latest is not None else None
    if new.resolve_after is None and new.decision in ("BUY", "SELL", "HOLD"):
        agents = trading_rules()["agents"]
        horizon = int(agents["candle_seconds"]) * int(agents["outcome_horizon_candles"])
        new.resolve_after = utcnow() + timedelta(seconds=horizon)
    with db.atomic():
        if (
            new.session_id is not None
            and not TradingSession.select().where(TradingSession.id == new.session_id).exists()
        ):
            raise NotFound("trading session not found", session_id=new.session_id)
        record_heartbeat(Heartbeat(name=new.agent_name))
        values = {key: value for key, value in vars(new).items() if key != "session_id"}
        if new.outcome != "PENDING":
            values["resolved_at"] = utcnow()
        decision = Decision.create(session=new.session_id, **values)
    DECISIONS.labels(new.agent_name, new.decision).inc()
    return decision


def list_decisions(filters: DecisionFilter, page: Page) -> Listing:
    """Decisions (row dicts), newest first, without the heavy prompt/response/embedding."""
    return Listing.of_compiled(DECISION_LIST, filters.values(), page)


def get_decision(decision_id: uuid.UUID) -> dict:
    """The full decision (a row dict) or 404 ``decision not found``."""
    decision = DECISION_DETAIL.first({"id": decision_id})
    if decision is None:
        raise NotFound("decision not found", decision_id=decision_id)
    return decision


def decision_stats(filters: DecisionFilter) -> dict:
    """Aggregates over the filtered decisions, each computed by PostgreSQL."""
    totals: dict = {}
    counts: dict[str, list[tuple[str, int]]] = {name: [] for name in _BREAKDOWNS}
    for row in DECISION_STATS.rows(filters.values()):
        kind = _GROUPING[row["grouping"]]
        if kind == "totals":
            totals = row
        else:
            counts[kind].append((row[_BREAKDOWNS[kind].column_name], row["total"]))
    # Most frequent first, ties by name: the order the breakdowns are listed in.
    counts = {
        name: dict(sorted(pairs, key=lambda pair: (-pair[1], pair[0])))
        for name, pairs in counts.items()
    }
    resolved_count = totals["resolved"]
    average_latency = totals["avg_latency_ms"]
    return {
        "total_decisions": totals["total"],
        "by_outcome": with_zeros(counts["by_outcome"], DECISION_OUTCOMES),
        "by_decision_type": with_zeros(
            counts["by_decision_type"], (*BUILT_IN_DECISION_TYPES, filters.decision_type)
        ),
        "avg_confidence": totals["avg_confidence"] or Decimal(0),
        "success_rate": (
            Decimal(totals["successes"]) / resolved_count if resolved_count else Decimal(0)
        ),
        "avg_pnl": totals["avg_pnl"] or Decimal(0),
        "by_model": with_zeros(counts["by_model"], (filters.model,)),
        "total_cost": totals["total_cost"],
        # The spec shows an integer; half-up, so 2.5 ms reads 3.
        "avg_latency_ms": int(Decimal(average_latency or 0).to_integral_value(ROUND_HALF_UP)),
    }


def with_zeros(counts: dict[str, int], keys) -> dict[str, int]:
    """Every listed key present (0 when nothing matched), then the counted ones, so a client can
    read ``by_outcome["PENDING"]`` without guarding against a missing key."""
    complete = {key: 0 for key in keys if key is not None}
    complete.update(counts)
    return complete
