"""Row factories: build realistic database rows directly, bypassing the API under test."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal

from app.models import Agent, Decision, Order, Position, Trade, TradingSession, utcnow

_counter = itertools.count()


def make_session(**overrides) -> TradingSession:
    values = {
        "mode": "PAPER",
        "symbol": "BTC/USDT",
        "exchange": "PAPER",
        "status": "RUNNING",
        "initial_capital": Decimal("10000"),
    }
    values.update(overrides)
    if values["status"] == "STOPPED":
        values.setdefault("stopped_at", utcnow())
    return TradingSession.create(**values)


def make_order(session: TradingSession | None = None, **overrides) -> Order:
    session = session or make_session()
    values = {
        "session": session.id,
        "symbol": session.symbol,
        "exchange": "PAPER",
        "side": "BUY",
        "type": "MARKET",
        "status": "NEW",
        "quantity": Decimal("0.1"),
        "placed_at": utcnow() + timedelta(microseconds=next(_counter)),
    }
    values.update(overrides)
    if values["status"] == "FILLED":
        values.setdefault("filled_at", utcnow())
        values.setdefault("executed_quantity", values["quantity"])
    if values["status"] == "CANCELED":
        values.setdefault("canceled_at", utcnow())
    return Order.create(**values)


def make_position(session: TradingSession | None = None, **overrides) -> Position:
    session = session or make_session()
    values = {
        "session": session.id,
        "symbol": session.symbol,
        "exchange": "PAPER",
        "side": "LONG",
        "status": "OPEN",
        "entry_price": Decimal("42000"),
        "quantity": Decimal("0.1"),
        "entry_time": utcnow() + timedelta(microseconds=next(_counter)),
    }
    values.update(overrides)
    if values["status"] == "CLOSED":
        values.setdefault("exit_time", utcnow())
        values.setdefault("exit_price", values["entry_price"])
    return Position.create(**values)


def make_trade(order: Order, **overrides) -> Trade:
    values = {
        "order": order.id,
        "session": order.session_id,
        "symbol": order.symbol,
        "exchange": "PAPER",
        "side": order.side,
        "price": Decimal("42000"),
        "quantity": order.quantity,
        "quote_quantity": Decimal("42000") * order.quantity,
        "commission": Decimal("4.2"),
    }
    values.update(overrides)
    return Trade.create(**values)


def make_agent(name: str = "technical-agent", **overrides) -> Agent:
    values = {
        "name": name,
        "status": "active",
        "metadata": {"version": "1.0.0", "type": "analysis"},
    }
    values.update(overrides)
    return Agent.create(**values)


def make_decision(**overrides) -> Decision:
    agent_name = overrides.pop("agent_name", "trend-agent")
    if not Agent.select().where(Agent.name == agent_name).exists():
        make_agent(agent_name)
    values = {
        "agent_name": agent_name,
        "symbol": "BTC/USDT",
        "decision_type": "signal",
        "decision": "BUY",
        "confidence": Decimal("0.8"),
        "reasoning": "RSI oversold and MACD crossing up",
        "context": {"price": 42000.0, "rsi": 35.2},
        "model": "claude-sonnet-4",
        "created_at": utcnow() + timedelta(microseconds=next(_counter)),
    }
    values.update(overrides)
    if values.get("outcome", "PENDING") != "PENDING":
        values.setdefault("resolved_at", utcnow())
    return Decision.create(**values)


def make_key(role: str = "viewer", name: str | None = None, **limits) -> str:
    """A fresh API key with ``role``; limits default far above what a test reaches."""
    from app.access import keys

    limits.setdefault("rate_limit", "1000000/minute")
    limits.setdefault("write_limit", "1000000/minute")
    request = keys.KeyRequest(name=name or f"{role}-{next(_counter)}", role=role, **limits)
    return keys.create_key(request)[1]


def counted(counter, **labels) -> float:
    """The counter's total over the samples carrying ``labels``."""
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and labels.items() <= sample.labels.items()
    )
