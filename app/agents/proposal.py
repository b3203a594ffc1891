"""Step 1 of deciding a candle: the facts, the agents' votes, and the risk agent's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from app.agents.approval import approval_prompt
from app.agents.claims import Claim
from app.agents.consensus import Vote
from app.agents.market_view import Indicators
from app.agents.risk import Proposal, RiskAgent, Verdict
from app.models import Position
from app.trading.market_rules import market_rule
from app.trading.rules import Rules
from app.trading.valuation import equity_of, marks_for, open_positions_elsewhere
from app.vocabulary import PAPER_EXCHANGE

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


def assess_risk(
    proposal: CandleProposal,
    session,
    indicators: Indicators,
    config: dict,
    market_exchange: str | None = None,
) -> None:
    """The risk agent's verdict on the consensus side, sized (to the lot size of the market
    on ``market_exchange``, a ccxt feed); the LLM prompt when needed."""
    rules = Rules.from_config(config)
    if session.exchange != PAPER_EXCHANGE:
        market_exchange = session.exchange  # a LIVE session: its own exchange's rules
    market = market_rule(market_exchange, session.symbol) if market_exchange else None
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
            market=market,
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
    if verdict.approved and verdict.action == "open" and config["risk"]["llm_approval_required"]:
        proposal.prompt = approval_prompt(
            session.symbol, side, verdict, proposal.facts, proposal.approval_context
        )


def open_quantity(session_id, symbol: str) -> Decimal:
    position = Position.open_for(session_id).where(Position.symbol == symbol).first()
    if position is None:
        return Decimal(0)
    return position.quantity if position.side == "LONG" else -position.quantity
