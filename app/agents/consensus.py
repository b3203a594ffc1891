"""The agents' vote on a candle: each strategy agent's signal, and the weighted consensus."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

VOTES = {"BUY": 1, "SELL": -1, "HOLD": 0}


@dataclass(frozen=True)
class Vote:
    """One strategy agent's signal on a candle."""

    agent_name: str
    decision: str
    confidence: float
    reasoning: str


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
