"""Schemas for positions."""

from marshmallow import Schema, fields

from app.schemas.common import PageArgs, PagedListSchema
from app.schemas.fields import Choice, Number, Symbol, Timestamp, Uuid


class PositionSchema(Schema):
    id = Uuid()
    session_id = Uuid()
    symbol = fields.String()
    exchange = fields.String()
    side = fields.String(metadata={"enum": ["LONG", "SHORT"]})
    status = fields.String(metadata={"enum": ["OPEN", "CLOSED"]})
    entry_price = Number()
    exit_price = Number(allow_none=True)
    quantity = Number()
    entry_time = Timestamp()
    exit_time = Timestamp(allow_none=True)
    stop_loss = Number(allow_none=True)
    take_profit = Number(allow_none=True)
    realized_pnl = Number()
    unrealized_pnl = Number()
    fees = Number()
    entry_reason = fields.String(allow_none=True)
    exit_reason = fields.String(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


class PositionEnvelopeSchema(Schema):
    position = fields.Nested(PositionSchema)


class PositionListSchema(PagedListSchema):
    positions = fields.List(fields.Nested(PositionSchema))


class PositionListArgs(PageArgs):
    session_id = Uuid()
    symbol = Symbol()
    status = Choice(("open", "closed", "all"), upper=False, load_default="open")


class LatestPositionArgs(Schema):
    session_id = Uuid()
