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

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal

from peewee import fn

from app.agents.approval import (
    Approval,
    ask_for_approval,
    refuse_if_session_changed,
)
from app.agents.claims import Claim, claim_candles, complete, still_held
from app.agents.consensus import VOTES, Vote, weighted_vote
from app.agents.decisions import NewDecision, record_decision
from app.agents.llm import LOCAL_MODEL, LocalReasoner
from app.agents.market_view import (
    Indicators,
    bucket_start,
    closed_candles,
    compute_indicators,
    context_embedding,
)
from app.agents.proposal import RISK_AGENT, AgentConfig, CandleProposal, assess_risk
from app.agents.registry import Heartbeat, record_heartbeat
from app.agents.strategies import STRATEGY_AGENTS
from app.db import db
from app.events import publish_error
from app.models import Decision, TradingSession, format_timestamp
from app.runtime_config import trading_rules
from app.trading.orders import OrderRequest, place_order

log = logging.getLogger(__name__)


class Orchestrator:
    """Claims candles and decides them; every figure it needs comes from the database."""

    def __init__(
        self,
        gateway=None,
        *,
        holder: str = "orchestrator",
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        market_exchange: str | None = None,
    ):
        self.gateway = gateway or LocalReasoner()
        # On a ccxt feed, the exchange whose market rules size the agents' orders.
        self.market_exchange = market_exchange
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
            assess_risk(proposal, session, indicators, config, self.market_exchange)
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

    # -- step 2: approve -------------------------------------------------------------------
    def approve(self, proposal: CandleProposal, config: dict) -> Approval:
        """Step 2, with no transaction and no lock held: a model may take seconds."""
        return ask_for_approval(self.gateway, proposal, config)

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
