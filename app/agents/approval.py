"""Step 2 of deciding a candle: the LLM's (or the local reasoner's) approval of an entry.

Runs with no transaction, row lock or pooled connection held; the session may change meanwhile,
which :func:`refuse_if_session_changed` applies when the decision is recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal

from app.agents.llm import LOCAL_MODEL, Answer, LlmFailure
from app.agents.risk import Verdict
from app.vocabulary import SessionStatus


@dataclass(frozen=True)
class Approval:
    """Step 2's answer: approved or not, why, and the model's figures for the record."""

    approved: bool
    confidence: Decimal
    reasoning: str
    outcome: str = "PENDING"
    record: dict = field(default_factory=lambda: {"model": LOCAL_MODEL})


def ask_for_approval(gateway, proposal, config: dict) -> Approval:
    """The LLM's (or local reasoner's) verdict on an approved entry; else the risk agent's.

    Runs with no transaction and no lock: a model may take seconds.
    """
    verdict = proposal.verdict
    if proposal.prompt is None:
        return Approval(verdict.approved, proposal.consensus, verdict.reasoning)
    try:
        answer: Answer = gateway.approve(
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


def approval_prompt(symbol: str, side: str, verdict, facts: dict, context: dict) -> str:
    """The user message for the LLM: the proposal and the figures behind it, as JSON."""
    return (
        f"Proposed trade: {side} {verdict.quantity} {symbol} at market.\n"
        f"Risk agent: {verdict.reasoning}\n"
        f"Figures: {json.dumps(facts, sort_keys=True)}\n"
        f"Market context: {json.dumps(context, sort_keys=True, default=str)}\n"
        "Approve or reject."
    )
