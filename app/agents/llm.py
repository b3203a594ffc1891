"""LLM gateway for trade approval: an OpenAI-compatible model, or the local rule-based reasoner.

With LLM_BASE_URL set, each approval is a chat completion asking for a JSON answer
``{"decision": "APPROVE"|"REJECT", "confidence": 0..1, "reasoning": "..."}``. The primary model
is tried first; on an error, a timeout or an answer that fails the schema, the fallback model is
tried. Answers are cached by prompt hash when ``enable_caching`` is on. Without LLM_BASE_URL the
local reasoner gives the same structured answer, deterministically, from the figures in the
proposal (model ``local-rules``). The API key is only ever handed to the HTTP client.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from decimal import Decimal

import openai
from marshmallow import Schema, ValidationError, fields, validate

from app.db import db
from app.models import LlmCacheEntry
from app.process_metrics import LLM_CALLS, LLM_COST, LLM_ERRORS, LLM_LATENCY
from app.settings import Settings

LOCAL_MODEL = "local-rules"
SYSTEM_PROMPT = (
    "You are the risk officer of a crypto trading desk. You receive a proposed trade with the "
    "market indicators, the agents' signals and the account's risk figures. Approve it only if "
    "the evidence supports it and it respects the limits. Answer with a JSON object and nothing "
    'else: {"decision": "APPROVE" or "REJECT", "confidence": a number from 0 to 1, '
    '"reasoning": a short explanation}.'
)


class AnswerSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["APPROVE", "REJECT"]))
    confidence = fields.Float(required=True, validate=validate.Range(0, 1), allow_nan=False)
    reasoning = fields.String(required=True, validate=validate.Length(1, 4000))


@dataclass(frozen=True)
class Answer:
    decision: str
    confidence: Decimal
    reasoning: str
    model: str
    prompt: str
    response: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    cost: Decimal = Decimal(0)
    cached: bool = False


class LlmFailure(Exception):
    """No model gave a valid answer; carries what the last attempt produced, for the record."""

    def __init__(self, message: str, *, model: str, prompt: str, response: str, latency_ms: int):
        super().__init__(message)
        self.model = model
        self.prompt = prompt
        self.response = response
        self.latency_ms = latency_ms


def parse_answer(text: str) -> dict:
    """Validate a model's answer against :class:`AnswerSchema`; ValueError when it does not fit."""
    try:
        payload = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"answer is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ValueError("answer is not a JSON object")
    try:
        return AnswerSchema().load(payload, unknown="exclude")
    except ValidationError as exc:
        raise ValueError(f"answer does not fit the schema: {exc.messages}") from None


def prompt_hash(model: str, prompt: str, temperature: float, max_tokens: int) -> str:
    material = json.dumps([SYSTEM_PROMPT, prompt, temperature, max_tokens, model])
    return hashlib.sha256(material.encode()).hexdigest()


def token_cost(model: str, prompt_tokens: int, completion_tokens: int, prices: dict) -> Decimal:
    """USD cost from the per-1,000-token prices in config ([llm_prices]); unknown models cost 0."""
    price = prices.get(model)
    if not price:
        return Decimal(0)
    return (
        Decimal(str(price["prompt"])) * prompt_tokens
        + Decimal(str(price["completion"])) * completion_tokens
    ) / 1000


class OpenAIGateway:
    """Chat completions against any OpenAI-compatible endpoint, with fallback and a cache."""

    def __init__(self, settings: Settings, timeout: float = 20.0):
        # LLM_MODEL / LLM_FALLBACK_MODEL choose the models (GET /config reports the same names).
        self.primary = settings.llm_model
        self.fallback = settings.llm_fallback_model
        self.client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
        )

    def approve(self, prompt: str, llm: dict, prices: dict, facts: dict | None = None) -> Answer:
        """Ask the primary model, then the fallback; the facts are already in the prompt."""
        models = [self.primary or llm["primary_model"]]
        fallback = self.fallback or llm.get("fallback_model")
        if fallback and fallback not in models:
            models.append(fallback)
        failure: LlmFailure | None = None
        for model in models:
            try:
                return self._ask(model, prompt, llm, prices)
            except LlmFailure as exc:
                failure = exc
        raise failure

    def _ask(self, model: str, prompt: str, llm: dict, prices: dict) -> Answer:
        temperature, max_tokens = float(llm["temperature"]), int(llm["max_tokens"])
        key = prompt_hash(model, prompt, temperature, max_tokens)
        if llm.get("enable_caching"):
            # Connection returned at once: none is held while the model thinks.
            with db.connection_context():
                hit = LlmCacheEntry.get_or_none(
                    (LlmCacheEntry.prompt_hash == key) & (LlmCacheEntry.model == model)
                )
            if hit is not None:
                answer = parse_answer(hit.response)
                return Answer(
                    answer["decision"], Decimal(repr(answer["confidence"])), answer["reasoning"],
                    model, prompt, hit.response, cached=True,
                )  # fmt: skip
        started = time.perf_counter()
        text = ""
        try:
            completion = self.client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": prompt},
                ],
                temperature=temperature,
                max_tokens=max_tokens,
                response_format={"type": "json_object"},
            )
            latency = int((time.perf_counter() - started) * 1000)
            text = completion.choices[0].message.content or ""
            answer = parse_answer(text)
        except (openai.OpenAIError, ValueError, IndexError, AttributeError) as exc:
            latency = int((time.perf_counter() - started) * 1000)
            count_llm_call(model, latency, error=failure_kind(exc))
            raise LlmFailure(
                f"{model}: {type(exc).__name__}: {exc}",
                model=model,
                prompt=prompt,
                response=text,
                latency_ms=latency,
            ) from None
        usage = completion.usage
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        cost = token_cost(model, prompt_tokens, completion_tokens, prices)
        count_llm_call(model, latency, cost=cost)
        if llm.get("enable_caching"):
            with db.connection_context():
                LlmCacheEntry.insert(
                    prompt_hash=key, model=model, response=text
                ).on_conflict_ignore().execute()
        return Answer(
            decision=answer["decision"],
            confidence=Decimal(repr(answer["confidence"])),
            reasoning=answer["reasoning"],
            model=completion.model or model,
            prompt=prompt,
            response=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency,
            cost=cost,
        )


def failure_kind(exc: Exception) -> str:
    """A short label for a failed call: timeout, connection, rate_limit, http_error, malformed."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limit"
    if isinstance(exc, openai.OpenAIError):
        return "http_error"
    return "malformed"


def count_llm_call(model: str, latency_ms: int, *, cost: Decimal = Decimal(0),
                   error: str | None = None) -> None:  # fmt: skip
    """The call in the process's LLM metrics (published by its heartbeat)."""
    LLM_CALLS.labels(model).inc()
    LLM_LATENCY.labels(model).observe(latency_ms / 1000)
    if error is not None:
        LLM_ERRORS.labels(model, error).inc()
    if cost:
        LLM_COST.labels(model).inc(float(cost))


class LocalReasoner:
    """The same structured answer as the LLM, from rules: no network, fully deterministic.

    It approves when the consensus reaches min_confidence, RSI is not stretched against the
    trade (above 75 for a buy, below 25 for a sell), and drawdown is below 80 % of its limit.
    """

    def approve(self, prompt: str, llm: dict, prices: dict, facts: dict | None = None) -> Answer:
        facts = facts or {}
        started = time.perf_counter()
        problems = []
        side, rsi = facts.get("side"), facts.get("rsi", 50.0)
        if facts.get("consensus", 0) < facts.get("min_confidence", 0):
            problems.append(
                f"consensus {facts.get('consensus', 0):.2f} is below min_confidence "
                f"{facts.get('min_confidence', 0):.2f}"
            )
        if side == "BUY" and rsi > 75:
            problems.append(f"RSI {rsi:.1f} is stretched for a buy")
        if side == "SELL" and rsi < 25:
            problems.append(f"RSI {rsi:.1f} is stretched for a sell")
        if facts.get("drawdown", 0) >= 0.8 * facts.get("max_drawdown", 1):
            problems.append("drawdown is within 20 % of its limit")
        decision = "REJECT" if problems else "APPROVE"
        reasoning = (
            "; ".join(problems)
            if problems
            else f"{side} supported by a {facts.get('consensus', 0):.2f} consensus, RSI "
            f"{rsi:.1f} leaves room, risk within limits"
        )
        confidence = round(min(0.99, max(0.5, float(facts.get("consensus", 0.5)))), 4)
        response = json.dumps(
            {"decision": decision, "confidence": confidence, "reasoning": reasoning}
        )
        return Answer(
            decision=decision,
            confidence=Decimal(repr(confidence)),
            reasoning=reasoning,
            model=LOCAL_MODEL,
            prompt=prompt,
            response=response,
            latency_ms=int((time.perf_counter() - started) * 1000),
        )


def build_gateway(settings: Settings):
    """The OpenAI-compatible gateway when LLM_BASE_URL is set, else the local reasoner."""
    return OpenAIGateway(settings) if settings.llm_base_url else LocalReasoner()
