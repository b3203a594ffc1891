"""The orchestrator: on each closed candle, every session's agents decide, and maybe trade.

Work is claimed per session and candle (:mod:`app.agents.claims`), so any number of agents
processes share it. Each claimed candle goes through small steps, on a thread of its own (up to
``concurrency`` at once):

1. **propose** — read the facts (candles, indicators, positions, equity) without holding a
   transaction; the strategy agents vote, the weighted consensus picks a side, the risk agent
   approves or vetoes and sizes it;
2. **approve** — when llm_approval_required, ask the LLM gateway (or the local reasoner), with
   no connection and no lock held;
3. **record and place** — one short transaction that checks the claim is still ours, re-reads
   the session (it may have been paused or stopped meanwhile), records the signals and the
   approval, and places the order through the same path as manual orders.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from peewee import fn

from app.agents.claims import Claim, claim_candles, complete, still_held
from app.agents.decisions import NewDecision, record_decision
from app.agents.llm import LOCAL_MODEL, Answer, LlmFailure, LocalReasoner
from app.agents.market_view import (
    Indicators,
    bucket_start,
    closed_candles,
    compute_indicators,
    context_embedding,
)
from app.agents.registry import Heartbeat, record_heartbeat
from app.agents.risk import Proposal, RiskAgent, Verdict
from app.agents.strategies import STRATEGY_AGENTS
from app.db import db
from app.events import publish_error
from app.models import Agent, Decision, Position, TradingSession, format_timestamp, utcnow
from app.runtime_config import trading_rules
from app.trading.orders import OrderRequest, place_order
from app.trading.rules import Rules
from app.trading.valuation import equity_of, marks_for, open_positions_elsewhere
from app.vocabulary import SessionStatus

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


@dataclass(frozen=True)
class Vote:
    """One strategy agent's signal on a candle."""

    agent_name: str
    decision: str
    confidence: float
    reasoning: str


@dataclass
class CandleProposal:
    """Everything step 1 read and decided for one claimed candle."""

    claim: Claim
    symbol: str
    price: Decimal
    context: dict
    embedding: list[float]
    resolve_after: datetime
    votes: list[Vote] = field(default_factory=list)
    side: str | None = None  # None: the consensus is flat, nothing to approve
    consensus: Decimal = Decimal(0)
    verdict: Verdict | None = None
    facts: dict = field(default_factory=dict)
    approval_context: dict = field(default_factory=dict)
    prompt: str | None = None  # set when the LLM must approve


@dataclass(frozen=True)
class Approval:
    """Step 2's answer: approved or not, why, and the model's figures for the record."""

    approved: bool
    confidence: Decimal
    reasoning: str
    outcome: str = "PENDING"
    record: dict = field(default_factory=lambda: {"model": LOCAL_MODEL})


class Orchestrator:
    """Claims candles and decides them; every figure it needs comes from the database."""

    def __init__(
        self,
        gateway=None,
        *,
        holder: str = "orchestrator",
        concurrency: int = 8,
        lease_seconds: float = 60.0,
    ):
        self.gateway = gateway or LocalReasoner()
        self.holder = holder
        self.concurrency = max(1, concurrency)
        self.lease_seconds = lease_seconds
        self.next_heartbeat_at = 0.0
        self.errors: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="agents")
        self._in_flight: set[Future] = set()
        self._lock = threading.Lock()

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
                "last_signal_at": format_timestamp(last_signal) if last_signal else None,
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

    # -- claiming and dispatching ----------------------------------------------------------
    @property
    def in_flight(self) -> int:
        with self._lock:
            self._in_flight = {f for f in self._in_flight if not f.done()}
            return len(self._in_flight)

    def dispatch(self, now: datetime | None = None, config: dict | None = None) -> list[Future]:
        """Claim as many due candles as there are free slots and start deciding them.

        ``now`` None: every session's current candle in market time (its latest tick's);
        a moment given (tests, backtests) stands for all sessions.
        """
        config = config or trading_rules()
        cfg = AgentConfig.current(config)
        with db.connection_context():
            self.heartbeat(cfg)
            claims = claim_candles(
                bucket_start(now, cfg.candle_seconds) if now is not None else None,
                cfg.candle_seconds,
                self.holder,
                self.lease_seconds,
                stale_seconds=self.lease_seconds + 2 * cfg.candle_seconds,
                limit=self.concurrency - self.in_flight,
            )
        futures = [self._pool.submit(self._decide, claim, config, cfg, now) for claim in claims]
        with self._lock:
            self._in_flight.update(futures)
        return futures

    def run(self, now: datetime | None = None, config: dict | None = None) -> int:
        """Claim every due candle, decide them all, and return how many decisions were made."""
        decided = 0
        while futures := self.dispatch(now, config):
            decided += sum(future.result() for future in futures)
        return decided

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _decide(self, claim: Claim, config: dict, cfg: AgentConfig, now: datetime | None) -> int:
        """Steps 1-3 for one claimed candle; a failure is logged and reported, never raised."""
        # Decided as the market stood when the candle closed (also when taken over late).
        moment = claim.candle_at + timedelta(milliseconds=1)
        if now is not None:
            moment = min(now, moment)
        try:
            with db.connection_context():
                proposal = self.propose(claim, config, cfg, moment)
            if proposal is None:
                return 0
            approval = self.approve(proposal, config) if proposal.verdict else None
            with db.connection_context():
                return self.record_and_place(proposal, approval)
        except Exception as exc:
            log.exception("deciding %s at %s failed", claim.session_id, claim.candle_at)
            try:
                with db.connection_context():
                    publish_error(
                        "Agent decision failed",
                        f"{type(exc).__name__}: {exc}",
                        "medium",
                        session_id=str(claim.session_id),
                        candle_at=claim.candle_at.isoformat(),
                    )
            except Exception:
                log.exception("could not report the failure")
            return 0

    # -- step 1: propose -------------------------------------------------------------------
    def propose(
        self, claim: Claim, config: dict, cfg: AgentConfig, now: datetime
    ) -> CandleProposal | None:
        """Read the facts and let the agents vote; None when there is nothing to decide."""
        session = TradingSession.get_or_none(TradingSession.id == claim.session_id)
        if session is None or not session.is_active:
            self._finish_without_decision(claim)
            return None
        candles = closed_candles(session.symbol, cfg.candle_seconds, cfg.lookback, now)
        indicators = compute_indicators(candles)
        if indicators is None:
            self._finish_without_decision(claim)  # still warming up: too little history
            return None
        proposal = CandleProposal(
            claim=claim,
            symbol=session.symbol,
            price=Decimal(repr(indicators.close)),
            context=indicators.as_context(),
            embedding=context_embedding(candles, indicators),
            resolve_after=now + cfg.horizon,
        )
        proposal.votes = self._collect_votes(session, indicators, cfg)
        direction, proposal.consensus = weighted_vote(
            [(vote, vote.decision, vote.confidence) for vote in proposal.votes], cfg.weights
        )
        if direction != 0:
            proposal.side = "BUY" if direction > 0 else "SELL"
            self._assess_risk(proposal, session, indicators, config)
        return proposal

    def _collect_votes(self, session, indicators: Indicators, cfg: AgentConfig) -> list[Vote]:
        votes = []
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
            votes.append(Vote(agent.name, signal.decision, signal.confidence, signal.reasoning))
        if self.errors:
            self.heartbeat(cfg, force=True)
        return votes

    def _assess_risk(
        self, proposal: CandleProposal, session, indicators: Indicators, config: dict
    ) -> None:
        rules = Rules.from_config(config)
        side = proposal.side
        equity, _, _ = equity_of(session, marks_for(session))
        held = open_quantity(session.id, session.symbol)
        drawdown = (
            (session.peak_equity - equity) / session.peak_equity if session.peak_equity > 0 else 0
        )
        min_confidence = Decimal(str(config["risk"]["min_confidence"]))
        verdict = RISK_AGENT.evaluate(
            Proposal(
                session_status=session.status,
                side=side,
                consensus=proposal.consensus,
                price=proposal.price,
                equity=equity,
                drawdown=Decimal(drawdown),
                position_quantity=held,
                open_positions=open_positions_elsewhere(session.id, session.symbol),
            ),
            rules,
            min_confidence,
        )
        proposal.verdict = verdict
        proposal.facts = {
            "side": side,
            "consensus": float(proposal.consensus),
            "min_confidence": float(min_confidence),
            "rsi": indicators.rsi,
            "drawdown": float(drawdown),
            "max_drawdown": float(rules.max_drawdown),
        }
        proposal.approval_context = {
            **proposal.context,
            "proposal": {
                "side": side,
                "action": verdict.action,
                "quantity": str(verdict.quantity),
                "consensus": float(proposal.consensus),
                "equity": float(equity),
                "position": str(held),
            },
        }
        if (
            verdict.approved
            and verdict.action == "open"
            and config["risk"]["llm_approval_required"]
        ):
            proposal.prompt = approval_prompt(
                session.symbol, side, verdict, proposal.facts, proposal.approval_context
            )

    # -- step 2: approve -------------------------------------------------------------------
    def approve(self, proposal: CandleProposal, config: dict) -> Approval:
        """The LLM's (or local reasoner's) verdict on an approved entry; else the risk agent's.

        Runs with no transaction and no lock: a model may take seconds.
        """
        verdict = proposal.verdict
        if proposal.prompt is None:
            return Approval(verdict.approved, proposal.consensus, verdict.reasoning)
        try:
            answer: Answer = self.gateway.approve(
                proposal.prompt, config["llm"], config.get("llm_prices", {}), facts=proposal.facts
            )
        except LlmFailure as failure:
            return Approval(
                approved=False,
                confidence=proposal.consensus,
                reasoning=f"Risk checks passed, but no valid LLM answer: {failure}",
                outcome="FAILURE",
                record={
                    "model": failure.model,
                    "prompt": failure.prompt,
                    "response": failure.response or None,
                    "latency_ms": failure.latency_ms,
                },
            )
        return Approval(
            approved=answer.decision == "APPROVE",
            confidence=answer.confidence,
            reasoning=f"Risk checks: {verdict.reasoning}\nLLM ({answer.model}): {answer.reasoning}",
            record={
                "model": answer.model,
                "prompt": answer.prompt,
                "response": answer.response,
                "prompt_tokens": answer.prompt_tokens,
                "completion_tokens": answer.completion_tokens,
                "latency_ms": answer.latency_ms,
                "cost": answer.cost,
            },
        )

    # -- step 3: record and place ----------------------------------------------------------
    def record_and_place(self, proposal: CandleProposal, approval: Approval | None) -> int:
        """One short transaction: still our claim? session state now? then record and trade."""
        claim = proposal.claim
        with db.atomic():
            if not still_held(claim):
                log.warning(
                    "claim on %s at %s was taken over; discarding this decision",
                    claim.session_id,
                    claim.candle_at,
                )
                return 0
            session = (
                TradingSession.select()
                .where(TradingSession.id == claim.session_id)
                .for_update()
                .first()
            )
            signals = [self._record_vote(proposal, vote) for vote in proposal.votes]
            recorded = len(signals)
            if approval is not None:
                approval = refuse_if_session_changed(approval, proposal.verdict, session)
                decision, order = self._record_approval(proposal, approval, session)
                recorded += 1
                direction = VOTES[proposal.side]
                # Decisions that opened a position are judged by its PnL when it closes; an
                # exit is judged like an unacted signal, by the move over the horizon.
                if order is not None and proposal.verdict.action == "open":
                    voters = [d.id for d in signals if VOTES[d.decision] == direction]
                    Decision.update(order=order.id).where(
                        Decision.id.in_([*voters, decision.id])
                    ).execute()
            TradingSession.update(last_candle_at=claim.candle_at).where(
                TradingSession.id == claim.session_id
            ).execute()
            complete(claim)
        return recorded

    def _record_vote(self, proposal: CandleProposal, vote: Vote) -> Decision:
        return record_decision(
            NewDecision(
                agent_name=vote.agent_name,
                symbol=proposal.symbol,
                decision_type="signal",
                decision=vote.decision,
                confidence=Decimal(repr(vote.confidence)),
                model=LOCAL_MODEL,
                reasoning=vote.reasoning,
                context={**proposal.context, "expected_direction": VOTES[vote.decision]},
                prompt_embedding=proposal.embedding,
                session_id=proposal.claim.session_id,
                reference_price=proposal.price,
                resolve_after=proposal.resolve_after,
                candle_at=proposal.claim.candle_at,
            )
        )

    def _record_approval(self, proposal: CandleProposal, approval: Approval, session):
        side_sign = 1 if proposal.side == "BUY" else -1
        context = {
            **proposal.approval_context,
            # An approved trade should move the right way; a vetoed one is right if it would not.
            "expected_direction": side_sign * (1 if approval.approved else -1),
        }
        decision = record_decision(
            NewDecision(
                agent_name=RISK_AGENT.name,
                symbol=proposal.symbol,
                decision_type="risk_approval",
                decision="APPROVE" if approval.approved else "REJECT",
                confidence=Decimal(approval.confidence).quantize(Decimal("0.00001")),
                reasoning=approval.reasoning,
                context=context,
                outcome=approval.outcome,
                prompt_embedding=proposal.embedding,
                session_id=proposal.claim.session_id,
                reference_price=proposal.price,
                resolve_after=proposal.resolve_after,
                candle_at=proposal.claim.candle_at,
                **approval.record,
            )
        )
        if not approval.approved:
            return decision, None
        order = place_order(
            OrderRequest(
                symbol=proposal.symbol,
                side=proposal.side,
                type="MARKET",
                quantity=proposal.verdict.quantity,
                session_id=session.id,
                source="orchestrator",
            )
        )
        return decision, order

    def _finish_without_decision(self, claim: Claim) -> None:
        with db.atomic():
            if still_held(claim):
                complete(claim)


def refuse_if_session_changed(approval: Approval, verdict: Verdict, session) -> Approval:
    """The session may have been paused or stopped while the model answered.

    Stopped: nothing is placed. Paused: an entry is not placed, an exit still is.
    """
    if not approval.approved or session is None:
        return approval
    if session.status == SessionStatus.STOPPED:
        why = "not placed: the session was stopped while the model was answering"
    elif session.status == SessionStatus.PAUSED and verdict.action == "open":
        why = (
            f"not placed: the session was paused ({session.status_reason}) while the model "
            "was answering; new entries are refused until it is resumed"
        )
    else:
        return approval
    return Approval(
        False, approval.confidence, f"{approval.reasoning}\n{why}", record=approval.record
    )


def weighted_vote(signals, weights: dict[str, float]) -> tuple[int, Decimal]:
    """Direction (-1, 0, +1) and confidence of sum(weight x vote x confidence) / sum(weight).

    BUY votes +1 and SELL -1; a HOLD abstains (it is left out of both sums), so one strong
    signal is not diluted by an agent that sees nothing, while opposing signals cancel out.
    """
    total_weight = 0.0
    score = 0.0
    for voter, vote, confidence in signals:
        if vote == "HOLD":
            continue
        weight = weights.get(voter.agent_name, 1.0)
        total_weight += weight
        score += weight * VOTES[vote] * confidence
    if total_weight == 0:
        return 0, Decimal(0)
    value = score / total_weight
    direction = 0 if abs(value) < 1e-9 else (1 if value > 0 else -1)
    return direction, Decimal(repr(round(abs(value), 5)))


def open_quantity(session_id, symbol: str) -> Decimal:
    position = Position.open_for(session_id).where(Position.symbol == symbol).first()
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
