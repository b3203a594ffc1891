"""Schemas for trading sessions and the start/stop/pause/resume actions."""

from marshmallow import Schema, fields, validate

from app.schemas.common import DateRangeArgs, PageArgs, PagedListSchema
from app.schemas.fields import Amount, Choice, Number, Symbol, Timestamp, Uuid

SESSION_STATUSES = ("RUNNING", "PAUSED", "STOPPED")
MODES = ("PAPER", "LIVE")


class SessionSchema(Schema):
    id = Uuid()
    mode = fields.String(metadata={"enum": list(MODES)})
    symbol = fields.String()
    exchange = fields.String()
    status = fields.String(metadata={"enum": list(SESSION_STATUSES)})
    status_reason = fields.String(allow_none=True)
    started_at = Timestamp()
    stopped_at = Timestamp(allow_none=True)
    initial_capital = Number()
    final_capital = Number(allow_none=True)
    total_pnl = Number()
    total_trades = fields.Integer()
    winning_trades = fields.Integer()
    losing_trades = fields.Integer()
    max_drawdown = Number()
    sharpe_ratio = Number()
    cash = Number()
    created_at = Timestamp()
    updated_at = Timestamp()


class SessionDetailSchema(SessionSchema):
    """A session with live figures (computed from the latest prices while it is active)."""

    cash = Number()
    equity = Number()
    realized_pnl = Number()
    unrealized_pnl = Number()
    open_positions = fields.Integer()


class SessionEnvelopeSchema(Schema):
    session = fields.Nested(SessionDetailSchema)


class EquityPointSchema(Schema):
    timestamp = Timestamp(attribute="sampled_at")
    equity = Number()
    cash = Number()
    position_value = Number()
    realized_pnl = Number()
    unrealized_pnl = Number()


class EquityCurveSchema(Schema):
    session_id = Uuid()
    points = fields.List(fields.Nested(EquityPointSchema))
    count = fields.Integer()


class EquityCurveArgs(PageArgs, DateRangeArgs):
    limit = fields.Integer(load_default=500, validate=validate.Range(1, 5000))


class SessionListSchema(PagedListSchema):
    sessions = fields.List(fields.Nested(SessionSchema))


class SessionListArgs(PageArgs):
    status = Choice(SESSION_STATUSES)
    symbol = Symbol()
    mode = Choice(MODES)


class StartTradingArgs(Schema):
    symbol = Symbol(required=True)
    initial_capital = Amount(
        positive=True,
        load_default=None,
        metadata={"description": "omitted: the configured initial_capital (PATCH /config)"},
    )
    mode = Choice(MODES, load_default="PAPER")


class StopTradingArgs(Schema):
    session_id = Uuid(required=True)
    final_capital = Amount(allow_none=True, load_default=None)


class SessionRefArgs(Schema):
    session_id = Uuid(required=True)


class StartedSchema(Schema):
    message = fields.String()
    session_id = Uuid()
    symbol = fields.String()
    mode = fields.String()
    started_at = Timestamp()


class StoppedSchema(Schema):
    message = fields.String()
    session_id = Uuid()
    final_capital = Number()
    total_pnl = Number()
    total_trades = fields.Integer()
    winning_trades = fields.Integer()
    losing_trades = fields.Integer()
    stopped_at = Timestamp()


class PausedSchema(Schema):
    message = fields.String()
    session_id = Uuid()
    symbol = fields.String()
    status = fields.String()
    note = fields.String()
