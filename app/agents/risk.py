"""The risk agent: approves or vetoes a proposed trade, and sizes it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal

from app.trading.market_rules import MarketRule, round_down_to_lot
from app.trading.rules import Rules
from app.vocabulary import SessionStatus

QUANTITY_STEP = Decimal("0.000001")
# Entries use at most this share of the max_position_size budget, leaving room for fees and
# slippage so the exchange's own check never refuses what the risk agent approved.
SIZE_BUFFER = Decimal("0.9")


@dataclass(frozen=True)
class Proposal:
    session_status: str
    side: str  # BUY | SELL
    consensus: Decimal  # 0..1
    price: Decimal
    equity: Decimal
    drawdown: Decimal
    position_quantity: Decimal  # signed: LONG > 0, SHORT < 0
    open_positions: int  # in the session, this symbol excluded
    market: MarketRule | None = None  # the exchange's rules on a ccxt feed


@dataclass(frozen=True)
class Verdict:
    approved: bool
    action: str  # open | close | none
    quantity: Decimal
    reasoning: str


class RiskAgent:
    name = "risk-agent"
    type = "risk"
    version = "1.0.0"

    def evaluate(self, proposal: Proposal, rules: Rules, min_confidence: Decimal) -> Verdict:
        """Exits are always approved; entries must clear confidence, drawdown and position
        limits, and are sized to max_position_size x equity (with a buffer)."""
        held = proposal.position_quantity
        opposite = (held > 0 and proposal.side == "SELL") or (held < 0 and proposal.side == "BUY")
        if opposite:
            return Verdict(
                True,
                "close",
                abs(held),
                f"Signal {proposal.side} against the open position of {held}: close it",
            )
        if held != 0:
            return Verdict(False, "none", Decimal(0), "Already positioned this way: no pyramiding")
        if proposal.session_status != SessionStatus.RUNNING:
            return Verdict(False, "none", Decimal(0), "Session paused: no new entries")
        if proposal.consensus < min_confidence:
            return Verdict(
                False,
                "none",
                Decimal(0),
                f"Consensus {proposal.consensus:.2f} is below min_confidence {min_confidence:.2f}",
            )
        if proposal.drawdown >= rules.max_drawdown * Decimal("0.8"):
            return Verdict(
                False,
                "none",
                Decimal(0),
                f"Drawdown {proposal.drawdown:.2%} is within 20 % of max_drawdown "
                f"{rules.max_drawdown:.2%}",
            )
        if proposal.open_positions + 1 > rules.max_positions:
            return Verdict(
                False, "none", Decimal(0), f"max_positions {rules.max_positions} already reached"
            )
        budget = rules.max_position_size * proposal.equity * SIZE_BUFFER
        quantity = (budget / proposal.price).quantize(QUANTITY_STEP, rounding=ROUND_DOWN)
        market = proposal.market
        if market is not None:
            quantity = round_down_to_lot(market, budget / proposal.price)
        if quantity <= 0:
            return Verdict(False, "none", Decimal(0), "Equity too small for a minimum order")
        notional = quantity * proposal.price
        if market is not None and (
            (market.min_quantity and quantity < market.min_quantity)
            or (market.min_notional and notional < market.min_notional)
        ):
            return Verdict(
                False, "none", Decimal(0),
                f"{quantity} at ~{proposal.price} is below the minimum order of {market.symbol} "
                f"on {market.exchange}",
            )  # fmt: skip
        return Verdict(
            True,
            "open",
            quantity,
            f"{proposal.side} {quantity} at ~{proposal.price}: notional {notional:.2f} "
            f"within max_position_size {rules.max_position_size:.0%} of equity "
            f"{proposal.equity:.2f}; consensus {proposal.consensus:.2f} >= {min_confidence:.2f}",
        )
