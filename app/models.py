"""Peewee models over the tables that app/migrations creates (the SQL is the source of truth)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from peewee import (
    AutoField,
    CharField,
    CompositeKey,
    DateField,
    DecimalField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
    UUIDField,
)
from pgvector.peewee import VectorField
from playhouse.postgres_ext import BinaryJSONField, DateTimeTZField

from app.db import db
from app.vocabulary import (
    ACTIVE_SESSION_STATUSES,
    OPEN_ORDER_STATUSES,
    Outcome,
    PositionStatus,
    SessionStatus,
)

EMBEDDING_DIMENSIONS = 16
DECISION_OUTCOMES = tuple(Outcome)
# The types the built-in agents record; external agents may record others.
BUILT_IN_DECISION_TYPES = ("signal", "risk_approval")


def utcnow() -> datetime:
    """Timezone-aware current time in UTC."""
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z`` suffix: every timestamp the API writes."""
    offset = value.utcoffset()
    if offset:
        value = value.astimezone(UTC)
    # "YYYY-MM-DDTHH:MM:SS.ffffff" is the first 26 characters, whatever the offset said.
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value) -> str:
    """jsonb encoder: request bodies carry exact Decimals, JSON documents store numbers."""
    return json.dumps(value, default=_json_default, allow_nan=False)


def JsonDocument(**kwargs) -> BinaryJSONField:
    """jsonb column written with :func:`dump_json`."""
    return BinaryJSONField(dumps=dump_json, **kwargs)


def Money(**kwargs) -> DecimalField:
    """NUMERIC(36,18) column as Decimal, never rounded silently by the ORM."""
    return DecimalField(max_digits=36, decimal_places=18, auto_round=False, **kwargs)


class BaseModel(Model):
    class Meta:
        database = db
        legacy_table_names = False


class TimestampedModel(BaseModel):
    created_at = DateTimeTZField(default=utcnow)
    updated_at = DateTimeTZField(default=utcnow)

    def save(self, *args, **kwargs):
        self.updated_at = utcnow()
        return super().save(*args, **kwargs)


class TradingSession(TimestampedModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    mode = CharField()
    symbol = CharField()
    exchange = CharField()
    status = CharField(default=SessionStatus.RUNNING)
    status_reason = TextField(null=True)
    started_at = DateTimeTZField(default=utcnow)
    stopped_at = DateTimeTZField(null=True)
    initial_capital = Money()
    final_capital = Money(null=True)
    total_pnl = Money(default=0)
    total_trades = IntegerField(default=0)
    winning_trades = IntegerField(default=0)
    losing_trades = IntegerField(default=0)
    max_drawdown = Money(default=0)
    sharpe_ratio = Money(default=0)
    cash = Money()
    peak_equity = Money()
    day_start_equity = Money()
    day_start_date = DateField()
    last_candle_at = DateTimeTZField(null=True)

    class Meta:
        table_name = "trading_sessions"

    def save(self, *args, **kwargs):
        # A new session starts flat: all of its capital is cash, which is also its peak.
        if self.cash is None:
            self.cash = Decimal(self.initial_capital)
            self.peak_equity = self.cash
            self.day_start_equity = self.cash
            self.day_start_date = utcnow().date()
        return super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_SESSION_STATUSES


class Position(TimestampedModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    session = ForeignKeyField(TradingSession, column_name="session_id", backref="positions")
    symbol = CharField()
    exchange = CharField()
    side = CharField()
    status = CharField(default=PositionStatus.OPEN)
    entry_price = Money()
    exit_price = Money(null=True)
    quantity = Money()
    entry_time = DateTimeTZField(default=utcnow)
    exit_time = DateTimeTZField(null=True)
    stop_loss = Money(null=True)
    take_profit = Money(null=True)
    realized_pnl = Money(default=0)
    unrealized_pnl = Money(default=0)
    fees = Money(default=0)
    entry_reason = TextField(null=True)
    exit_reason = TextField(null=True)
    closed_quantity = Money(default=0)
    mark_price = Money(null=True)

    class Meta:
        table_name = "positions"

    @classmethod
    def open_for(cls, session_id):
        """The open positions of a session (one per symbol at most)."""
        return cls.select().where(cls.session == session_id, cls.status == PositionStatus.OPEN)

    @classmethod
    def of_sessions(cls, session_ids, status: PositionStatus | None = None):
        """Positions of several sessions, optionally of one status."""
        query = cls.select().where(cls.session.in_(list(session_ids)))
        return query if status is None else query.where(cls.status == status)

    @classmethod
    def open_anywhere(cls):
        """Every open position, of every session."""
        return cls.select().where(cls.status == PositionStatus.OPEN)


class Order(TimestampedModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    session = ForeignKeyField(TradingSession, column_name="session_id", null=True, backref="orders")
    position = ForeignKeyField(Position, column_name="position_id", null=True, backref="orders")
    exchange_order_id = CharField(null=True)
    symbol = CharField()
    exchange = CharField()
    side = CharField()
    type = CharField()
    status = CharField(default="NEW")
    price = Money(null=True)
    stop_price = Money(null=True)
    quantity = Money()
    executed_quantity = Money(default=0)
    executed_quote_quantity = Money(default=0)
    time_in_force = CharField(default="GTC")
    source = CharField(default="manual")
    placed_at = DateTimeTZField(default=utcnow)
    filled_at = DateTimeTZField(null=True)
    canceled_at = DateTimeTZField(null=True)
    expired_at = DateTimeTZField(null=True)
    accepted_at = DateTimeTZField(null=True)
    triggered_at = DateTimeTZField(null=True)
    error_message = TextField(null=True)
    sent_at = DateTimeTZField(null=True)  # LIVE: the exchange process began sending it
    settled_at = DateTimeTZField(null=True)  # LIVE: final on the exchange, every fill applied

    class Meta:
        table_name = "orders"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ORDER_STATUSES


class Trade(BaseModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    order = ForeignKeyField(Order, column_name="order_id", backref="trades")
    session = ForeignKeyField(TradingSession, column_name="session_id", null=True, backref="trades")
    position = ForeignKeyField(Position, column_name="position_id", null=True, backref="trades")
    symbol = CharField()
    exchange = CharField()
    side = CharField()
    price = Money()
    quantity = Money()
    quote_quantity = Money()
    commission = Money(default=0)
    commission_asset = CharField(null=True)
    executed_at = DateTimeTZField(default=utcnow)
    created_at = DateTimeTZField(default=utcnow)

    class Meta:
        table_name = "trades"


class Agent(TimestampedModel):
    name = CharField(primary_key=True)
    status = CharField(default="active")
    last_seen_at = DateTimeTZField(default=utcnow)
    heartbeat_interval_seconds = IntegerField(default=30)
    metadata = JsonDocument(default=dict)

    class Meta:
        table_name = "agents"


class Decision(BaseModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    session = ForeignKeyField(
        TradingSession, column_name="session_id", null=True, backref="decisions"
    )
    agent_name = CharField()
    symbol = CharField()
    decision_type = CharField()
    decision = CharField()
    confidence = DecimalField(max_digits=6, decimal_places=5, auto_round=True)
    reasoning = TextField(default="")
    context = JsonDocument(default=dict)
    prompt = TextField(null=True)
    response = TextField(null=True)
    prompt_embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS, null=True)
    prompt_tokens = IntegerField(default=0)
    completion_tokens = IntegerField(default=0)
    model = CharField()
    outcome = CharField(default="PENDING")
    actual_pnl = Money(null=True)
    latency_ms = IntegerField(default=0)
    cost = Money(default=0)
    resolved_at = DateTimeTZField(null=True)
    created_at = DateTimeTZField(default=utcnow)
    order = ForeignKeyField(Order, column_name="order_id", null=True, backref="decisions")
    position = ForeignKeyField(Position, column_name="position_id", null=True, backref="decisions")
    reference_price = Money(null=True)
    resolve_after = DateTimeTZField(null=True)
    candle_at = DateTimeTZField(null=True)

    class Meta:
        table_name = "llm_decisions"


class MarketPrice(BaseModel):
    symbol = CharField(primary_key=True)
    price = Money()
    volume = Money(null=True)
    source = CharField(default="manual")
    price_time = DateTimeTZField(default=utcnow)
    updated_at = DateTimeTZField(default=utcnow)
    tick_id = IntegerField(null=True)
    # What orders may still take of this tick's volume (None: not processed, or no cap).
    liquidity_left = Money(null=True)

    class Meta:
        table_name = "market_prices"


class ConfigOverride(BaseModel):
    key = CharField(primary_key=True)
    value = JsonDocument()
    updated_at = DateTimeTZField(default=utcnow)

    class Meta:
        table_name = "config_overrides"


class MarketTick(BaseModel):
    id = AutoField()
    symbol = CharField()
    price = Money()
    volume = Money(null=True)
    source = CharField(default="manual")
    tick_time = DateTimeTZField(default=utcnow)
    processed_at = DateTimeTZField(null=True)
    created_at = DateTimeTZField(default=utcnow)

    class Meta:
        table_name = "market_ticks"


class EquitySnapshot(BaseModel):
    id = AutoField()
    session = ForeignKeyField(TradingSession, column_name="session_id", backref="equity")
    sampled_at = DateTimeTZField(default=utcnow)
    equity = Money()
    cash = Money()
    position_value = Money()
    realized_pnl = Money()
    unrealized_pnl = Money()

    class Meta:
        table_name = "equity_snapshots"


class LlmCacheEntry(BaseModel):
    prompt_hash = CharField()
    model = CharField()
    response = TextField()
    created_at = DateTimeTZField(default=utcnow)

    class Meta:
        table_name = "llm_cache"
        primary_key = CompositeKey("prompt_hash", "model")


class SystemEvent(BaseModel):
    """An engine, configuration or failure event; inserting one publishes it."""

    id = AutoField()
    type = CharField()
    data = JsonDocument()
    created_at = DateTimeTZField(default=utcnow)

    class Meta:
        table_name = "system_events"


class AgentClaim(BaseModel):
    """A session's closed candle, leased to one agents process at a time."""

    session = ForeignKeyField(TradingSession, column_name="session_id")
    candle_at = DateTimeTZField()
    token = UUIDField()
    holder = CharField()
    lease_until = DateTimeTZField()
    attempts = IntegerField(default=1)
    done_at = DateTimeTZField(null=True)

    class Meta:
        table_name = "agent_claims"
        primary_key = CompositeKey("session", "candle_at")


class SupervisedProcess(BaseModel):
    name = CharField(primary_key=True)
    pid = IntegerField(null=True)
    started_at = DateTimeTZField(default=utcnow)
    restarts = IntegerField(default=0)
    last_exit_code = IntegerField(null=True)
    last_restart_at = DateTimeTZField(null=True)

    class Meta:
        table_name = "supervised_processes"


ALL_TABLES = (
    "agent_claims",
    "job_leases",
    "engine_leader",
    "supervised_processes",
    "process_heartbeats",
    "llm_cache",
    "equity_snapshots",
    "market_ticks",
    "system_events",
    "trades",
    "orders",
    "positions",
    "exchange_markets",
    "exchange_fills",
    "exchange_prices",
    "exchange_accounts",
    "decision_text_embeddings",
    "decision_words",
    "llm_decisions",
    "agents",
    "trading_sessions",
    "market_prices",
    "config_overrides",
)
