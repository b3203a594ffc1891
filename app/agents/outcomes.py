"""Judging decisions: by the PnL of the position they opened, or by the move they predicted.

A decision whose order opened a position resolves when that position closes: SUCCESS when its
realized PnL (fees included) is positive, FAILURE otherwise, with actual_pnl set. Any other
decision resolves once its horizon (outcome_horizon_candles x candle_seconds) has passed, by the
latest price against its reference price and its expected direction (context
``expected_direction``, else BUY +1, SELL -1, HOLD 0): +1 is right if the price rose, -1 if it
fell, 0 if it moved less than hold_band either way. Those have no actual_pnl.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from app.db import db
from app.models import Decision, MarketPrice, utcnow
from app.process_metrics import OUTCOMES

DIRECTIONS = {"BUY": 1, "SELL": -1, "HOLD": 0}

LINK_POSITIONS_SQL = """
UPDATE llm_decisions d SET position_id = o.position_id
  FROM orders o
 WHERE d.order_id = o.id AND d.position_id IS NULL AND d.outcome = 'PENDING'
   AND o.position_id IS NOT NULL AND o.executed_quantity > 0
"""

RESOLVE_BY_POSITION_SQL = """
UPDATE llm_decisions d
   SET outcome = CASE WHEN p.realized_pnl > 0 THEN 'SUCCESS' ELSE 'FAILURE' END,
       actual_pnl = p.realized_pnl,
       resolved_at = now()
  FROM positions p
 WHERE d.position_id = p.id AND p.status = 'CLOSED' AND d.outcome = 'PENDING'
RETURNING d.agent_name, d.outcome
"""


def resolve_outcomes(hold_band: Decimal) -> int:
    """Resolve every decision that can be judged now; returns how many were."""
    with db.atomic():
        db.execute_sql(LINK_POSITIONS_SQL)
        judged = db.execute_sql(RESOLVE_BY_POSITION_SQL).fetchall()
    count_outcomes(judged)
    resolved = len(judged)
    due = (
        Decision.select(
            Decision.id,
            Decision.agent_name,
            Decision.symbol,
            Decision.decision,
            Decision.context,
            Decision.reference_price,
        )
        .join(MarketPrice, on=(MarketPrice.symbol == Decision.symbol))
        .where(
            Decision.outcome == "PENDING",
            # The horizon is in market time: judged once the market has reached it.
            Decision.resolve_after <= MarketPrice.price_time,
            Decision.position.is_null(),
            Decision.reference_price.is_null(False),
        )
        .limit(1000)
    )
    prices = {row.symbol: row.price for row in MarketPrice.select()}
    for decision in due:
        expected = decision.context.get("expected_direction", DIRECTIONS.get(decision.decision))
        price = prices.get(decision.symbol)
        if expected is None or price is None:
            continue
        move = price / decision.reference_price - 1
        if expected > 0:
            right = move > 0
        elif expected < 0:
            right = move < 0
        else:
            right = abs(move) < hold_band
        outcome = "SUCCESS" if right else "FAILURE"
        updated = (
            Decision.update(outcome=outcome, resolved_at=utcnow())
            .where(Decision.id == decision.id, Decision.outcome == "PENDING")
            .execute()
        )
        count_outcomes([(decision.agent_name, outcome)] * updated)
        resolved += updated
    return resolved


def count_outcomes(judged) -> None:
    """(agent, outcome) pairs in the process's outcome counter."""
    for (agent, outcome), judged_now in Counter(judged).items():
        OUTCOMES.labels(agent, outcome).inc(judged_now)
