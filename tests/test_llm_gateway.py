"""The LLM gateway over real HTTP against a fake OpenAI-compatible server."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from decimal import Decimal

import pytest

from app.agents.llm import LlmFailure, LocalReasoner, OpenAIGateway, build_gateway, parse_answer
from app.models import LlmCacheEntry
from tests.fake_llm import FakeLLM

PRICES = {"approve-primary": {"prompt": 0.01, "completion": 0.03}}
SECRET = "sk-test-do-not-leak"


@pytest.fixture
def fake():
    server = FakeLLM()
    yield server
    server.close()


def llm_config(primary, fallback, caching=False):
    return {
        "primary_model": primary,
        "fallback_model": fallback,
        "temperature": 0.3,
        "max_tokens": 300,
        "enable_caching": caching,
    }


@pytest.fixture
def gateway(fake, settings):
    return OpenAIGateway(
        replace(settings, llm_base_url=fake.base_url, llm_api_key=SECRET), timeout=1.0
    )


def test_valid_answer_records_tokens_latency_cost_and_model(app, fake, gateway):
    answer = gateway.approve(
        "Proposed trade: BUY", llm_config("approve-primary", "reject-fb"), PRICES
    )
    assert (answer.decision, answer.confidence, answer.model) == (
        "APPROVE",
        Decimal("0.82"),
        "approve-primary",
    )
    assert (answer.prompt_tokens, answer.completion_tokens) == (1200, 80)
    assert answer.cost == Decimal("0.0144")  # 1.2 x 0.01 + 0.08 x 0.03
    assert answer.latency_ms >= 0
    assert json.loads(answer.response)["reasoning"] == "approve-primary says so"
    request = fake.requests[0]
    assert (request["temperature"], request["max_tokens"]) == (0.3, 300)
    assert request["response_format"] == {"type": "json_object"}
    assert request["messages"][1]["content"] == "Proposed trade: BUY"
    assert fake.headers[0]["authorization"] == f"Bearer {SECRET}"


def test_primary_failure_falls_back(app, fake, gateway):
    answer = gateway.approve("p", llm_config("down-primary", "reject-fallback"), PRICES)
    assert (answer.decision, answer.model) == ("REJECT", "reject-fallback")
    assert fake.models_asked() == ["down-primary", "reject-fallback"]


def test_timeout_falls_back(app, fake, gateway):
    answer = gateway.approve("p", llm_config("slow-primary", "approve-fallback"), PRICES)
    assert answer.model == "approve-fallback"


def test_malformed_answers_from_both_models_fail_with_what_was_said(app, fake, gateway):
    with pytest.raises(LlmFailure) as failure:
        gateway.approve("p", llm_config("garbage-primary", "garbage-fallback"), PRICES)
    assert failure.value.model == "garbage-fallback"
    assert failure.value.response.startswith("I think")
    assert "not JSON" in str(failure.value)


def test_cache_serves_a_repeated_prompt_without_a_request(app, fake, gateway):
    config = llm_config("approve-primary", "reject-fallback", caching=True)
    first = gateway.approve("same prompt", config, PRICES)
    second = gateway.approve("same prompt", config, PRICES)
    assert len(fake.requests) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.decision == first.decision
    assert second.cost == 0
    assert LlmCacheEntry.select().count() == 1
    gateway.approve("another prompt", config, PRICES)
    assert len(fake.requests) == 2


def test_the_key_never_reaches_the_logs(app, fake, gateway, caplog):
    caplog.set_level(logging.DEBUG)
    gateway.approve("p", llm_config("down-primary", "approve-fallback"), PRICES)
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "text",
    ["", "[]", '{"decision": "MAYBE", "confidence": 0.5, "reasoning": "x"}',
     '{"decision": "APPROVE", "confidence": 2, "reasoning": "x"}',
     '{"decision": "APPROVE", "confidence": 0.5}'],
)  # fmt: skip
def test_answer_schema_refuses_bad_answers(text):
    with pytest.raises(ValueError):
        parse_answer(text)


def test_without_base_url_the_local_reasoner_answers(settings):
    reasoner = build_gateway(settings)
    assert isinstance(reasoner, LocalReasoner)
    facts = {
        "side": "BUY",
        "consensus": 0.8,
        "min_confidence": 0.7,
        "rsi": 55.0,
        "drawdown": 0.0,
        "max_drawdown": 0.15,
    }
    first = reasoner.approve("prompt", {}, {}, facts=facts)
    assert (first.decision, first.model) == ("APPROVE", "local-rules")
    assert reasoner.approve("prompt", {}, {}, facts=facts) == first  # deterministic
    stretched = reasoner.approve("prompt", {}, {}, facts={**facts, "rsi": 80.0})
    assert stretched.decision == "REJECT"
    assert "RSI 80.0" in stretched.reasoning


def test_calls_errors_latency_and_cost_are_counted_by_model(app, fake, gateway):
    from app.process_metrics import serialized

    def samples() -> dict:
        return {
            (name, tuple(sorted(labels.items()))): value
            for family in serialized()
            if family["name"].startswith("cryptofunk_llm")
            for name, labels, value in family["samples"]
        }

    before = samples()
    gateway.approve("Proposed trade: BUY", llm_config("down-primary", "approve-fb"), PRICES)
    with pytest.raises(LlmFailure):
        gateway.approve("Proposed trade: SELL", llm_config("garbage-a", "slow-b"), PRICES)
    after = samples()

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("cryptofunk_llm_calls_total", model="down-primary") == 1
    assert grew("cryptofunk_llm_errors_total", model="down-primary", kind="http_error") == 1
    assert grew("cryptofunk_llm_errors_total", model="garbage-a", kind="malformed") == 1
    assert grew("cryptofunk_llm_errors_total", model="slow-b", kind="timeout") == 1
    assert grew("cryptofunk_llm_calls_total", model="approve-fb") == 1
    assert grew("cryptofunk_llm_errors_total", model="approve-fb", kind="http_error") == 0
    assert grew("cryptofunk_llm_latency_seconds_count", model="approve-fb") == 1
    assert grew("cryptofunk_llm_cost_usd_total", model="approve-fb") == 0  # no price for it
