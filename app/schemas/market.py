"""Schemas for latest market prices and tick ingestion."""

from marshmallow import Schema, fields, validate

from app.schemas.fields import Amount, Number, Symbol, Timestamp


class PriceSchema(Schema):
    symbol = fields.String()
    price = Number()
    volume = Number(allow_none=True)
    source = fields.String()
    timestamp = Timestamp(attribute="price_time")
    updated_at = Timestamp()


class PriceEnvelopeSchema(Schema):
    price = fields.Nested(PriceSchema)


class PriceResultSchema(PriceEnvelopeSchema):
    message = fields.String()


class PriceListSchema(Schema):
    prices = fields.List(fields.Nested(PriceSchema))
    count = fields.Integer()


class PriceListArgs(Schema):
    symbol = fields.List(
        Symbol(),
        validate=validate.Length(max=100),
        metadata={"description": "Repeat to select several symbols"},
    )


class TickArgs(Schema):
    symbol = Symbol(required=True)
    price = Amount(required=True, positive=True)
    volume = Amount(allow_none=True, load_default=None)
    timestamp = Timestamp(allow_none=True, load_default=None)


class CandleArgs(Schema):
    interval = fields.Integer(
        load_default=60,
        validate=validate.OneOf([60, 300, 900, 3600, 14400, 86400]),
        metadata={"description": "Candle length in seconds"},
    )
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class CandleSchema(Schema):
    time = Timestamp(attribute="start", metadata={"description": "Start of the candle"})
    open = fields.Float()
    high = fields.Float()
    low = fields.Float()
    close = fields.Float()
    volume = fields.Float()


class CandleListSchema(Schema):
    symbol = fields.String()
    interval = fields.Integer()
    candles = fields.List(fields.Nested(CandleSchema))
    count = fields.Integer()
