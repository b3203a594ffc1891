"""Agents in the engine: signals, consensus, risk approval, LLM approval, orders, outcomes."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import psycopg2
import pytest
from peewee import IntegrityError

from app.agents import strategies
from app.agents.consensus import weighted_vote
from app.agents.decisions import NewDecision, record_decision
from app.agents.llm import Answer, OpenAIGateway
from app.agents.orchestrator import Orchestrator
from app.agents.outcomes import resolve_outcomes
from app.agents.proposal import AgentConfig
from app.agents.registry import mark_silent_agents_inactive
from app.db import connect_kwargs
from app.models import (
    Agent,
    AgentClaim,
    Decision,
    MarketTick,
    Order,
    Position,
    SystemEvent,
    TradingSession,
    utcnow,
)
from app.runtime_config import trading_rules, update_config
from app.trading.market import record_tick
from app.trading.matching import process_pending
from app.trading.rules import Rules
from app.trading.sessions import pause_session, start_session, stop_session
from tests.factories import make_agent
from tests.fake_llm import FakeLLM

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CANDLE = 10  # the default candle_seconds


def write_candles(symbol: str, closes: list[float], start: datetime = T0, seed: int = 1) -> None:
    """Four processed ticks per 10-second candle ending at each close (history, like the feed's)."""
    rng = random.Random(seed)
    rows = []
    previous = closes[0]
    for index, close in enumerate(closes):
        base = start + timedelta(seconds=index * CANDLE)
        wiggle = abs(close - previous) * 0.3 + close * 0.0002
        path = [
            previous,
            min(previous, close) - wiggle * rng.random(),
            max(previous, close) + wiggle * rng.random(),
            close,
        ]
        for step, price in enumerate(path):
            rows.append(
                {
                    "symbol": symbol,
                    "price": D(repr(round(price, 6))),
                    "volume": D(repr(round(rng.uniform(1, 3), 4))),
                    "tick_time": base + timedelta(seconds=step * CANDLE / 4),
                    "processed_at": utcnow(),
                }
            )
        previous = close
    MarketTick.insert_many(rows).execute()


def trend(start: float, step: float, count: int, noise: float = 0.0, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    values, price = [], start
    for _ in range(count):
        price *= 1 + step + rng.gauss(0, noise)
        values.append(price)
    return values


def end_of(index: int) -> datetime:
    """A moment just after candle ``index`` closed."""
    return T0 + timedelta(seconds=(index + 1) * CANDLE, milliseconds=1)


@pytest.fixture
def session(app):
    update_config({"max_position_size": 0.5, "min_confidence": 0.55, "max_drawdown": 0.5})
    opened = start_session("BTC/USDT", D(100_000), "PAPER")
    return opened


def uptrend() -> list[float]:
    """A believable rally: steady but noisy, RSI in the 60s, ADX well above 20."""
    return trend(60000, 0.001, 80, noise=0.003, seed=3)


def test_a_candle_yields_signals_an_approval_and_an_order(session):
    closes = uptrend()
    write_candles("BTC/USDT", closes)
    record_tick("BTC/USDT", D(repr(round(closes[-1], 2))))
    decided = Orchestrator().run(now=end_of(79))
    assert decided == 3
    signals = {d.agent_name: d for d in Decision.select().where(Decision.decision_type == "signal")}
    assert set(signals) == {"technical-agent", "trend-agent"}
    trend_signal = signals["trend-agent"]
    assert trend_signal.decision == "BUY"
    assert "ADX(14)" in trend_signal.reasoning
    assert len(trend_signal.prompt_embedding) == 16
    assert trend_signal.context["rsi"] > 50
    assert trend_signal.reference_price == D(repr(round(closes[-1], 6)))
    assert trend_signal.resolve_after is not None
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert approval.decision == "APPROVE", approval.reasoning
    assert approval.model == "local-rules"  # llm_approval_required: the local reasoner answered
    assert approval.prompt.startswith("Proposed trade: BUY")
    assert "APPROVE" in approval.response
    order = Order.get(Order.source == "orchestrator")
    assert (order.side, order.type, order.session_id) == ("BUY", "MARKET", session.id)
    assert approval.order_id == order.id
    assert trend_signal.__class__.get_by_id(trend_signal.id).order_id == order.id
    process_pending(Rules.current())
    assert Order.get_by_id(order.id).status == "FILLED"
    # The same candle is never decided twice, even by a restarted orchestrator.
    assert Orchestrator().run(now=end_of(79)) == 0


def test_agents_register_with_metadata(session):
    write_candles("BTC/USDT", trend(60000, 0.001, 60))
    Orchestrator().run(now=end_of(59))
    agents = {a.name: a for a in Agent.select()}
    assert set(agents) == {"technical-agent", "trend-agent", "risk-agent"}
    technical = agents["technical-agent"]
    assert technical.status == "active"
    assert technical.metadata["type"] == "analysis"
    assert technical.metadata["version"] == "1.0.0"
    Orchestrator().heartbeat(AgentConfig.current(trading_rules()), force=True)
    signalled = Agent.get_by_id("technical-agent").metadata["last_signal_at"]
    assert signalled.endswith("Z") and "+00:00" not in signalled  # the API's one format


def test_too_little_history_makes_no_decision(session):
    write_candles("BTC/USDT", trend(60000, 0.001, 20))
    assert Orchestrator().run(now=end_of(19)) == 0
    assert Decision.select().count() == 0


def test_paused_session_takes_no_new_entry(session):
    write_candles("BTC/USDT", trend(60000, 0.004, 80, noise=0.0005))
    pause_session(session.id)
    Orchestrator().run(now=end_of(79))
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert approval.decision == "REJECT"
    assert "paused" in approval.reasoning
    assert Order.select().count() == 0


def test_stopped_sessions_are_left_alone(session):
    write_candles("BTC/USDT", trend(60000, 0.004, 80))
    TradingSession.update(status="STOPPED", stopped_at=utcnow()).execute()
    assert Orchestrator().run(now=end_of(79)) == 0


@pytest.fixture
def fake():
    server = FakeLLM()
    yield server
    server.close()


def llm_gateway(settings, fake, primary: str, fallback: str) -> OpenAIGateway:
    configured = replace(
        settings, llm_base_url=fake.base_url, llm_model=primary, llm_fallback_model=fallback
    )
    return OpenAIGateway(configured, timeout=2)


def test_llm_approval_goes_through_the_gateway(session, settings, fake):
    update_config({"llm_temperature": 0.2})
    write_candles("BTC/USDT", uptrend())
    Orchestrator(llm_gateway(settings, fake, "reject-primary", "approve-fallback")).run(
        now=end_of(79)
    )
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert (approval.decision, approval.model) == ("REJECT", "reject-primary")
    assert (approval.prompt_tokens, approval.completion_tokens) == (1200, 80)
    assert "reject-primary says so" in approval.reasoning
    assert fake.requests[0]["temperature"] == 0.2
    assert Order.select().count() == 0


def test_malformed_llm_answer_is_a_failed_decision_and_places_no_order(session, settings, fake):
    write_candles("BTC/USDT", uptrend())
    Orchestrator(llm_gateway(settings, fake, "garbage-primary", "garbage-fallback")).run(
        now=end_of(79)
    )
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert (approval.decision, approval.outcome) == ("REJECT", "FAILURE")
    assert "no valid LLM answer" in approval.reasoning
    assert approval.response.startswith("I think")
    assert Order.select().count() == 0


def test_approving_llm_lets_the_order_through(session, settings, fake):
    write_candles("BTC/USDT", uptrend())
    Orchestrator(llm_gateway(settings, fake, "approve-primary", "reject-fallback")).run(
        now=end_of(79)
    )
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert (approval.decision, approval.model) == ("APPROVE", "approve-primary")
    assert Order.get(Order.source == "orchestrator").side == "BUY"


def test_weighted_vote_abstains_on_hold_and_cancels_opposites():
    class Voter:
        def __init__(self, name):
            self.agent_name = name

    weights = {"a": 1.0, "b": 1.5}
    assert weighted_vote([(Voter("a"), "HOLD", 0.9), (Voter("b"), "BUY", 0.8)], weights) == (
        1,
        D("0.8"),
    )
    direction, confidence = weighted_vote(
        [(Voter("a"), "SELL", 0.9), (Voter("b"), "BUY", 0.8)], weights
    )
    assert (direction, confidence) == (1, D("0.12"))  # (1.2 - 0.9) / 2.5
    assert weighted_vote([(Voter("a"), "HOLD", 0.9)], weights) == (0, D(0))


def test_opened_position_resolves_its_decisions_with_its_pnl(session):
    closes = uptrend()
    write_candles("BTC/USDT", closes)
    record_tick("BTC/USDT", D(repr(round(closes[-1], 2))))
    Orchestrator().run(now=end_of(79))
    rules = Rules.current()
    process_pending(rules)
    resolve_outcomes(D("0.002"))
    linked = list(Decision.select().where(Decision.position.is_null(False)))
    assert {d.decision_type for d in linked} == {"signal", "risk_approval"}
    assert all(d.outcome == "PENDING" for d in linked)
    position = Position.get(Position.status == "OPEN")
    record_tick("BTC/USDT", position.entry_price * D("1.01"))
    Order.create(
        session=session.id, symbol="BTC/USDT", exchange="PAPER", side="SELL", type="MARKET",
        quantity=position.quantity, source="manual",
    )  # fmt: skip
    process_pending(rules)
    closed = Position.get_by_id(position.id)
    assert closed.status == "CLOSED" and closed.realized_pnl > 0
    resolve_outcomes(D("0.002"))
    for decision in Decision.select().where(Decision.position == position.id):
        assert (decision.outcome, decision.actual_pnl) == ("SUCCESS", closed.realized_pnl)
        assert decision.resolved_at is not None


def test_unacted_decisions_resolve_by_the_predicted_move_after_the_horizon(app):
    record_tick("ETH/USDT", D(100))
    past = utcnow() - timedelta(seconds=1)
    made = {}
    for decision, direction in (("BUY", 1), ("SELL", -1), ("HOLD", 0)):
        made[decision] = Decision.create(
            agent_name=make_agent(f"a-{decision.lower()}").name, symbol="ETH/USDT",
            decision_type="signal", decision=decision, confidence=D("0.7"), model="m",
            reference_price=D(100), resolve_after=past, context={"expected_direction": direction},
        )  # fmt: skip
    later = Decision.create(
        agent_name="a-buy", symbol="ETH/USDT", decision_type="signal", decision="BUY",
        confidence=D("0.7"), model="m", reference_price=D(100),
        resolve_after=utcnow() + timedelta(hours=1),
    )  # fmt: skip
    record_tick("ETH/USDT", D("100.1"))
    assert resolve_outcomes(D("0.002")) == 3
    outcomes = {name: Decision.get_by_id(d.id).outcome for name, d in made.items()}
    assert outcomes == {"BUY": "SUCCESS", "SELL": "FAILURE", "HOLD": "SUCCESS"}
    assert Decision.get_by_id(later.id).outcome == "PENDING"


def test_external_decisions_are_judged_like_the_engines(client):
    client.post("/api/v1/market/prices", json={"symbol": "SOL/USDT", "price": 150})
    response = client.post(
        "/api/v1/decisions",
        json={"agent_name": "outside", "symbol": "SOL/USDT", "decision_type": "signal",
              "decision": "SELL", "confidence": 0.7, "model": "their-model"},
    )  # fmt: skip
    decision = Decision.get_by_id(response.json["decision"]["id"])
    assert decision.reference_price == 150
    assert decision.resolve_after > utcnow() + timedelta(seconds=50)
    Decision.update(resolve_after=utcnow()).where(Decision.id == decision.id).execute()
    client.post("/api/v1/market/prices", json={"symbol": "SOL/USDT", "price": 140})
    resolve_outcomes(D("0.002"))
    assert Decision.get_by_id(decision.id).outcome == "SUCCESS"
    stats = client.get("/api/v1/decisions/stats?model=their-model").json
    assert stats["by_outcome"] == {"SUCCESS": 1, "FAILURE": 0, "PENDING": 0}
    assert stats["success_rate"] == 1.0


def test_silent_agents_turn_inactive_after_three_missed_heartbeats(app):
    make_agent(
        "quiet", heartbeat_interval_seconds=10, last_seen_at=utcnow() - timedelta(seconds=31)
    )
    make_agent(
        "recent", heartbeat_interval_seconds=10, last_seen_at=utcnow() - timedelta(seconds=29)
    )
    assert mark_silent_agents_inactive() == 1
    assert Agent.get_by_id("quiet").status == "inactive"
    assert Agent.get_by_id("recent").status == "active"


def test_a_failing_agent_turns_error_and_recovers(session, monkeypatch):
    write_candles("BTC/USDT", trend(60000, 0.001, 70))
    orchestrator = Orchestrator()

    def broken(self, indicators):
        raise RuntimeError("indicator feed corrupt")

    monkeypatch.setattr(strategies.TechnicalAgent, "analyze", broken)
    orchestrator.run(now=end_of(68))
    agent = Agent.get_by_id("technical-agent")
    assert agent.status == "error"
    assert "indicator feed corrupt" in agent.metadata["last_error"]
    error = SystemEvent.get(SystemEvent.type == "error")
    assert error.data["error"] == "Agent failed"
    assert error.data["metadata"]["agent"] == "technical-agent"
    assert Agent.get_by_id("trend-agent").status == "active"
    monkeypatch.undo()
    orchestrator.run(now=end_of(69))
    assert Agent.get_by_id("technical-agent").status == "active"


def test_decisions_from_the_same_regime_rank_above_the_others(session, client):
    regimes = {
        "rally": trend(60000, 0.003, 60, noise=0.0003, seed=11),
        "chop": None,
        "selloff": None,
    }
    rng = random.Random(5)
    last = regimes["rally"][-1]
    regimes["chop"] = [
        last * (1 + 0.006 * math.sin(i * 1.7) + rng.gauss(0, 0.002)) for i in range(60)
    ]
    regimes["selloff"] = trend(regimes["chop"][-1], -0.003, 60, noise=0.0003, seed=13)
    closes = regimes["rally"] + regimes["chop"] + regimes["selloff"]
    write_candles("BTC/USDT", closes)
    orchestrator = Orchestrator()
    labels: dict[str, str] = {}
    for regime_index, name in enumerate(regimes):
        for offset in range(44, 60, 3):  # well inside each regime
            before = {d.id for d in Decision.select(Decision.id)}
            orchestrator.run(now=end_of(regime_index * 60 + offset))
            for decision in Decision.select(Decision.id):
                if decision.id not in before:
                    labels[str(decision.id)] = name
    for name in regimes:
        members = [id_ for id_, label in labels.items() if label == name]
        reference = members[0]
        similar = client.get(f"/api/v1/decisions/{reference}/similar?limit={len(members) - 1}").json
        ranked = [labels[item["id"]] for item in similar["similar"]]
        assert ranked == [name] * (len(members) - 1), (name, ranked)


class StubGateway:
    """An LLM gateway that runs ``during_call`` while "the model thinks", then approves."""

    def __init__(self, during_call):
        self.during_call = during_call

    def approve(self, prompt, llm, prices, facts=None) -> Answer:
        self.during_call()
        return Answer("APPROVE", D("0.9"), "stub approves", "stub-model", prompt, "{}")


def test_no_transaction_or_row_lock_is_held_while_the_model_answers(session, database_url):
    write_candles("BTC/USDT", uptrend())
    seen = {}

    def probe_locks():
        conn = psycopg2.connect(**connect_kwargs(database_url))
        try:
            with conn, conn.cursor() as cursor:
                # NOWAIT: fails at once if the orchestrator still held the session row.
                cursor.execute(
                    "SELECT id FROM trading_sessions WHERE id = %s FOR UPDATE NOWAIT",
                    (session.id.hex,),
                )
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
                )
                seen["idle_in_transaction"] = cursor.fetchone()[0]
        finally:
            conn.close()

    Orchestrator(StubGateway(probe_locks)).run(now=end_of(79))
    assert seen == {"idle_in_transaction": 0}
    assert Decision.get(Decision.decision_type == "risk_approval").decision == "APPROVE"
    assert Order.select().where(Order.source == "orchestrator").count() == 1


def test_session_paused_while_the_model_answers_gets_no_entry(session):
    write_candles("BTC/USDT", uptrend())
    Orchestrator(StubGateway(lambda: pause_session(session.id))).run(now=end_of(79))
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert approval.decision == "REJECT"
    assert "not placed: the session was paused" in approval.reasoning
    assert Order.select().count() == 0


def test_session_stopped_while_the_model_answers_gets_nothing_placed(session):
    write_candles("BTC/USDT", uptrend())
    Orchestrator(StubGateway(lambda: stop_session(session.id))).run(now=end_of(79))
    approval = Decision.get(Decision.decision_type == "risk_approval")
    assert approval.decision == "REJECT"
    assert "stopped while the model was answering" in approval.reasoning
    assert Order.select().where(Order.source == "orchestrator").count() == 0


def test_a_process_whose_lease_was_taken_over_records_nothing(session):
    write_candles("BTC/USDT", uptrend())

    def frozen_past_the_lease():
        # While this process "froze", its lease ran out and another process decided the candle.
        AgentClaim.update(lease_until=utcnow() - timedelta(seconds=1)).execute()
        assert Orchestrator(holder="other-process").run(now=end_of(79)) == 3

    first = Orchestrator(StubGateway(frozen_past_the_lease), holder="frozen-process")
    assert first.run(now=end_of(79)) == 0
    assert Decision.select().where(Decision.decision_type == "risk_approval").count() == 1
    assert Decision.select().where(Decision.decision_type == "signal").count() == 2
    assert Order.select().count() == 1
    claim = AgentClaim.get()
    assert (claim.holder, claim.attempts) == ("other-process", 2)
    assert claim.done_at is not None


def test_a_candle_decision_cannot_be_recorded_twice(session):
    fields = {
        "agent_name": "risk-agent",
        "symbol": "BTC/USDT",
        "decision_type": "risk_approval",
        "decision": "APPROVE",
        "confidence": D("0.9"),
        "model": "local-rules",
        "session_id": session.id,
        "candle_at": T0,
    }
    record_decision(NewDecision(**fields))
    with pytest.raises(IntegrityError):
        record_decision(NewDecision(**fields))


def test_model_calls_for_different_sessions_run_concurrently(app):
    update_config({"max_position_size": 0.5, "min_confidence": 0.55, "max_drawdown": 0.5})
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"]
    for symbol in symbols:
        start_session(symbol, D(100_000), "PAPER")
        write_candles(symbol, uptrend())
    # Each call waits until all four are in flight at once; called one after another, the
    # barrier would break and no call would approve.
    barrier = threading.Barrier(len(symbols), timeout=10)
    Orchestrator(StubGateway(barrier.wait), concurrency=len(symbols)).run(now=end_of(79))
    approvals = Decision.select().where(Decision.decision_type == "risk_approval")
    assert sorted(a.decision for a in approvals) == ["APPROVE"] * len(symbols)
    assert Order.select().where(Order.source == "orchestrator").count() == len(symbols)
