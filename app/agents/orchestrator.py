"""The orchestrator: on each closed candle, every session's agents decide, and maybe trade.

For each RUNNING session (PAUSED ones may only exit): the strategy and analysis agents each
record a ``signal`` decision; a weighted vote (weights in config [agents]) gives the consensus
direction and confidence; the risk agent approves or vetoes and sizes the order, and when
llm_approval_required the LLM gateway (or the local reasoner) must approve too. The verdict is
recorded as a ``risk_approval`` decision, and an approved trade becomes a MARKET order of the
session that the exchange fills like any other.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from peewee import fn

from app.agents.decisions import NewDecision, record_decision
from app.agents.llm import LOCAL_MODEL, LlmFailure, LocalReasoner
from app.agents.market_view import (
    Indicators,
    bucket_start,
    closed_candles,
    compute_indicators,
    context_embedding,
)
from app.agents.registry import Heartbeat, record_heartbeat
from app.agents.risk import Proposal, RiskAgent
from app.agents.strategies import STRATEGY_AGENTS
from app.db import db
from app.events import publish_error
from app.models import ACTIVE_SESSION_STATUSES, Agent, Decision, Position, TradingSession, utcnow
from app.runtime_config import trading_rules
from app.trading.orders import OrderRequest, place_order
from app.trading.rules import Rules
from app.trading.valuation import equity_of, marks_for, open_positions_elsewhere

log = logging.getLogger(__name__)
VOTES = {"BUY": 1, "SELL": -1, "HOLD": 0}
RISK_AGENT = RiskAgent()


@dataclass(frozen=True)
class AgentConfig:
    candle_seconds: int
    lookback: int
    horizon_candles: int
    heartbeat_seconds: int
    weights: dict[str, float]

    @classmethod
    def current(cls, config: dict) -> AgentConfig:
        agents = config["agents"]
        return cls(
            candle_seconds=int(agents["candle_seconds"]),
            lookback=int(agents["lookback_candles"]),
            horizon_candles=int(agents["outcome_horizon_candles"]),
            heartbeat_seconds=int(agents["heartbeat_seconds"]),
            weights={name: float(weight) for name, weight in agents["weights"].items()},
        )

    @property
    def horizon(self) -> timedelta:
        return timedelta(seconds=self.candle_seconds * self.horizon_candles)


class Orchestrator:
    """Runs inside the engine process; every figure it needs comes from the database."""

    def __init__(self, gateway=None):
        self.gateway = gateway or LocalReasoner()
        self.next_heartbeat_at = 0.0
        self.errors: dict[str, str] = {}

    # -- agents' liveness ------------------------------------------------------------------
    def heartbeat(self, cfg: AgentConfig, force: bool = False) -> None:
        """Every in-process agent reports in, with its signal count and health."""
        if not force and time.monotonic() < self.next_heartbeat_at:
            return
        self.next_heartbeat_at = time.monotonic() + cfg.heartbeat_seconds
        for agent in (*STRATEGY_AGENTS, RISK_AGENT):
            counts = Decision.select(fn.COUNT(Decision.id), fn.MAX(Decision.created_at)).where(
                Decision.agent_name == agent.name
            )
            signals, last_signal = counts.scalar(as_tuple=True)
            metadata = {
                "version": agent.version,
                "type": agent.type,
                "signals_generated": signals,
                "last_signal_at": last_signal.isoformat() if last_signal else None,
            }
            error = self.errors.get(agent.name)
            if error:
                metadata["last_error"] = error
            record_heartbeat(
                Heartbeat(
                    name=agent.name,
                    status="error" if error else "active",
                    metadata=metadata,
                    heartbeat_interval_seconds=cfg.heartbeat_seconds,
                )
            )

    # -- one pass --------------------------------------------------------------------------
    def run(self, now: datetime | None = None, config: dict | None = None) -> int:
        """Decide for every active session whose latest candle has not been decided yet.

        ``config`` is the configuration document the caller already loaded this cycle.
        """
        now = now or utcnow()
        config = config or trading_rules()
        cfg = AgentConfig.current(config)
        self.heartbeat(cfg)
        rules = Rules.from_config(config)
        decided = 0
        sessions = TradingSession.select(TradingSession.id).where(
            TradingSession.status.in_(ACTIVE_SESSION_STATUSES)
        )
        candle_end = bucket_start(now, cfg.candle_seconds)
        for (session_id,) in sessions.tuples():
            with db.atomic():
                session = (
                    TradingSession.select()
                    .where(TradingSession.id == session_id)
                    .for_update()
                    .first()
                )
                if session is None or not session.is_active:
                    continue
                if session.last_candle_at is not None and session.last_candle_at >= candle_end:
                    continue
                session.last_candle_at = candle_end
                session.save()
                decided += self.decide(session, config, cfg, rules, now)
        return decided

    def decide(self, session, config: dict, cfg: AgentConfig, rules: Rules, now) -> int:
        candles = closed_candles(session.symbol, cfg.candle_seconds, cfg.lookback, now)
        indicators = compute_indicators(candles)
        if indicators is None:
            return 0  # still warming up: too little history for the indicators
        embedding = context_embedding(candles, indicators)
        context = indicators.as_context()
        price = Decimal(repr(indicators.close))
        signals: list[tuple[Decision, str, float]] = []
        for agent in STRATEGY_AGENTS:
            try:
                signal = agent.analyze(indicators)
            except Exception as exc:  # an agent's bug must not stop the others
                log.exception("%s failed", agent.name)
                self.errors[agent.name] = f"{type(exc).__name__}: {exc}"
                publish_error(
                    "Agent failed",
                    f"{agent.name}: {type(exc).__name__}: {exc}",
                    "medium",
                    agent=agent.name,
                    session_id=str(session.id),
                    symbol=session.symbol,
                )
                continue
            if self.errors.pop(agent.name, None):
                self.heartbeat(cfg, force=True)
            decision = record_decision(
                NewDecision(
                    agent_name=agent.name,
                    symbol=session.symbol,
                    decision_type="signal",
                    decision=signal.decision,
                    confidence=Decimal(repr(signal.confidence)),
                    model=LOCAL_MODEL,
                    reasoning=signal.reasoning,
                    context={**context, "expected_direction": VOTES[signal.decision]},
                    prompt_embedding=embedding,
                    session_id=session.id,
                    reference_price=price,
                    resolve_after=now + cfg.horizon,
                )
            )
            signals.append((decision, signal.decision, signal.confidence))
        if self.errors:
            self.heartbeat(cfg, force=True)
        direction, consensus = weighted_vote(signals, cfg.weights)
        if direction == 0:
            return len(signals)
        side = "BUY" if direction > 0 else "SELL"
        approval, order, action = self.approve_and_trade(
            session, side, consensus, price, indicators, context, embedding, config, rules, cfg, now
        )
        # Decisions that opened a position are judged by its PnL when it closes; an exit is
        # judged like an unacted signal, by the move over the horizon.
        if order is not None and action == "open":
            voters = [d.id for d, vote, _ in signals if VOTES[vote] == direction]
            Decision.update(order=order.id).where(Decision.id.in_([*voters, approval.id])).execute()
        return len(signals) + 1

    def approve_and_trade(
        self, session, side, consensus, price, indicators: Indicators, context, embedding,
        config, rules: Rules, cfg: AgentConfig, now,
    ):  # fmt: skip
        equity, _, _ = equity_of(session, marks_for(session))
        held = open_quantity(session.id, session.symbol)
        others = open_positions_elsewhere(session.id, session.symbol)
        drawdown = (
            (session.peak_equity - equity) / session.peak_equity if session.peak_equity > 0 else 0
        )
        min_confidence = Decimal(str(config["risk"]["min_confidence"]))
        proposal = Proposal(
            session_status=session.status,
            side=side,
            consensus=consensus,
            price=price,
            equity=equity,
            drawdown=Decimal(drawdown),
            position_quantity=held,
            open_positions=others,
        )
        verdict = RISK_AGENT.evaluate(proposal, rules, min_confidence)
        facts = {
            "side": side,
            "consensus": float(consensus),
            "min_confidence": float(min_confidence),
            "rsi": indicators.rsi,
            "drawdown": float(drawdown),
            "max_drawdown": float(rules.max_drawdown),
        }
        approval_context = {
            **context,
            "proposal": {
                "side": side,
                "action": verdict.action,
                "quantity": str(verdict.quantity),
                "consensus": float(consensus),
                "equity": float(equity),
                "position": str(held),
            },
            # An approved trade should move the right way; a vetoed one is right if it would not.
            "expected_direction": (1 if side == "BUY" else -1) * (1 if verdict.approved else -1),
        }
        fields = {
            "agent_name": RISK_AGENT.name,
            "symbol": session.symbol,
            "decision_type": "risk_approval",
            "prompt_embedding": embedding,
            "session_id": session.id,
            "reference_price": price,
            "resolve_after": now + cfg.horizon,
        }
        approved, confidence, reasoning = verdict.approved, consensus, verdict.reasoning
        extra: dict = {"model": LOCAL_MODEL}
        outcome = "PENDING"
        if (
            verdict.approved
            and verdict.action == "open"
            and config["risk"]["llm_approval_required"]
        ):
            prompt = approval_prompt(session.symbol, side, verdict, facts, approval_context)
            llm = config["llm"]
            try:
                answer = self.gateway.approve(
                    prompt, llm, config.get("llm_prices", {}), facts=facts
                )
                approved = answer.decision == "APPROVE"
                confidence = answer.confidence
                reasoning = (
                    f"Risk checks: {verdict.reasoning}\nLLM ({answer.model}): {answer.reasoning}"
                )
                extra = {
                    "model": answer.model,
                    "prompt": answer.prompt,
                    "response": answer.response,
                    "prompt_tokens": answer.prompt_tokens,
                    "completion_tokens": answer.completion_tokens,
                    "latency_ms": answer.latency_ms,
                    "cost": answer.cost,
                }
            except LlmFailure as failure:
                approved = False
                outcome = "FAILURE"
                reasoning = f"Risk checks passed, but no valid LLM answer: {failure}"
                extra = {
                    "model": failure.model,
                    "prompt": failure.prompt,
                    "response": failure.response or None,
                    "latency_ms": failure.latency_ms,
                }
            approval_context["expected_direction"] = (1 if side == "BUY" else -1) * (
                1 if approved else -1
            )
        approval = record_decision(
            NewDecision(
                decision="APPROVE" if approved else "REJECT",
                confidence=Decimal(confidence).quantize(Decimal("0.00001")),
                reasoning=reasoning,
                context=approval_context,
                outcome=outcome,
                **fields,
                **extra,
            )
        )
        if not approved:
            return approval, None, verdict.action
        order = place_order(
            OrderRequest(
                symbol=session.symbol,
                side=side,
                type="MARKET",
                quantity=verdict.quantity,
                session_id=session.id,
                source="orchestrator",
            )
        )
        return approval, order, verdict.action


def weighted_vote(signals, weights: dict[str, float]) -> tuple[int, Decimal]:
    """Direction (-1, 0, +1) and confidence of sum(weight x vote x confidence) / sum(weight).

    BUY votes +1 and SELL -1; a HOLD abstains (it is left out of both sums), so one strong
    signal is not diluted by an agent that sees nothing, while opposing signals cancel out.
    """
    total_weight = 0.0
    score = 0.0
    for decision, vote, confidence in signals:
        if vote == "HOLD":
            continue
        weight = weights.get(decision.agent_name, 1.0)
        total_weight += weight
        score += weight * VOTES[vote] * confidence
    if total_weight == 0:
        return 0, Decimal(0)
    value = score / total_weight
    direction = 0 if abs(value) < 1e-9 else (1 if value > 0 else -1)
    return direction, Decimal(repr(round(abs(value), 5)))


def open_quantity(session_id, symbol: str) -> Decimal:
    position = (
        Position.select()
        .where(Position.session == session_id, Position.symbol == symbol, Position.status == "OPEN")
        .first()
    )
    if position is None:
        return Decimal(0)
    return position.quantity if position.side == "LONG" else -position.quantity


def approval_prompt(symbol: str, side: str, verdict, facts: dict, context: dict) -> str:
    """The user message for the LLM: the proposal and the figures behind it, as JSON."""
    return (
        f"Proposed trade: {side} {verdict.quantity} {symbol} at market.\n"
        f"Risk agent: {verdict.reasoning}\n"
        f"Figures: {json.dumps(facts, sort_keys=True)}\n"
        f"Market context: {json.dumps(context, sort_keys=True, default=str)}\n"
        "Approve or reject."
    )


def mark_silent_agents_inactive() -> int:
    """Agents that missed three heartbeats become inactive (each change is an agent_status)."""
    return (
        Agent.update(status="inactive", updated_at=utcnow())
        .where(
            Agent.status == "active",
            Agent.last_seen_at
            < fn.now() - fn.make_interval(0, 0, 0, 0, 0, 0, Agent.heartbeat_interval_seconds * 3),
        )
        .execute()
    )
