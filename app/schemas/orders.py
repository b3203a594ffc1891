"""Schemas for orders: entry validation and the Order data model."""

from marshmallow import Schema, ValidationError, fields, validates_schema

from app.schemas.common import PageArgs, PagedListSchema
from app.schemas.fields import Amount, Choice, Number, Symbol, Timestamp, Uuid
from app.trading.rules import MAX_NOTIONAL
from app.vocabulary import LIMIT_TYPES, TRIGGERED_TYPES

SIDES = ("BUY", "SELL")
ORDER_TYPES = (
    "MARKET",
    "LIMIT",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)
ORDER_STATUSES = ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")


class OrderSchema(Schema):
    id = Uuid()
    session_id = Uuid()
    position_id = Uuid()
    exchange_order_id = fields.String(allow_none=True)
    symbol = fields.String()
    exchange = fields.String()
    side = fields.String(metadata={"enum": list(SIDES)})
    type = fields.String(metadata={"enum": list(ORDER_TYPES)})
    status = fields.String(metadata={"enum": list(ORDER_STATUSES)})
    price = Number(allow_none=True)
    stop_price = Number(allow_none=True)
    quantity = Number()
    executed_quantity = Number()
    executed_quote_quantity = Number()
    time_in_force = fields.String(metadata={"enum": list(TIME_IN_FORCE)})
    source = fields.String()
    placed_at = Timestamp()
    filled_at = Timestamp(allow_none=True)
    canceled_at = Timestamp(allow_none=True)
    expired_at = Timestamp(allow_none=True)
    error_message = fields.String(allow_none=True)
    created_at = Timestamp()
    updated_at = Timestamp()


class OrderEnvelopeSchema(Schema):
    order = fields.Nested(OrderSchema)


class OrderResultSchema(OrderEnvelopeSchema):
    message = fields.String()


class OrderListSchema(PagedListSchema):
    orders = fields.List(fields.Nested(OrderSchema))


class OrderListArgs(PageArgs):
    session_id = Uuid()
    symbol = Symbol()
    status = Choice(ORDER_STATUSES)
    side = Choice(SIDES)


class CreateOrderArgs(Schema):
    symbol = Symbol(required=True)
    side = Choice(SIDES, required=True)
    type = Choice(ORDER_TYPES, required=True)
    quantity = Amount(required=True, positive=True)
    price = Amount(
        positive=True,
        allow_none=True,
        load_default=None,
        metadata={
            "description": "limit price: required for LIMIT, STOP_LOSS_LIMIT and "
            "TAKE_PROFIT_LIMIT; must be null or absent for MARKET (400 'price must be null "
            "for MARKET orders'), which fills at the market price with slippage"
        },
    )
    stop_price = Amount(
        positive=True,
        allow_none=True,
        load_default=None,
        metadata={
            "description": "trigger price: required for STOP_LOSS(_LIMIT) and "
            "TAKE_PROFIT(_LIMIT); must be null or absent for MARKET and LIMIT"
        },
    )
    time_in_force = Choice(TIME_IN_FORCE, load_default="GTC")
    session_id = Uuid(allow_none=True, load_default=None)

    @validates_schema
    def _prices_match_type(self, data, **kwargs):
        order_type = data.get("type")
        if order_type in LIMIT_TYPES and data.get("price") is None:
            raise ValidationError(f"Price is required for {order_type} orders", "price")
        if order_type in TRIGGERED_TYPES and data.get("stop_price") is None:
            raise ValidationError(f"stop_price is required for {order_type} orders", "stop_price")
        if order_type == "MARKET" and data.get("price") is not None:
            raise ValidationError("price must be null for MARKET orders", "price")
        if order_type in ("MARKET", "LIMIT") and data.get("stop_price") is not None:
            raise ValidationError(f"stop_price does not apply to {order_type} orders", "stop_price")
        priced_at = max(data.get("price") or 0, data.get("stop_price") or 0)
        quantity = data.get("quantity")
        if quantity is not None and priced_at * quantity > MAX_NOTIONAL:
            raise ValidationError(
                f"price x quantity is {priced_at * quantity:,.0f}; an order's notional must not "
                f"exceed {MAX_NOTIONAL:,.0f}",
                "quantity",
            )
