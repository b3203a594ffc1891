"""Schemas for fills (trades)."""

from marshmallow import Schema, fields

from app.schemas.common import PageArgs, PagedListSchema
from app.schemas.fields import Number, Symbol, Timestamp, Uuid


class TradeSchema(Schema):
    id = Uuid()
    order_id = Uuid()
    session_id = Uuid()
    position_id = Uuid()
    symbol = fields.String()
    exchange = fields.String()
    side = fields.String(metadata={"enum": ["BUY", "SELL"]})
    price = Number()
    quantity = Number()
    quote_quantity = Number()
    commission = Number()
    commission_asset = fields.String(allow_none=True)
    executed_at = Timestamp()


class TradeListSchema(PagedListSchema):
    trades = fields.List(fields.Nested(TradeSchema))


class TradeListArgs(PageArgs):
    session_id = Uuid()
    order_id = Uuid()
    symbol = Symbol()
