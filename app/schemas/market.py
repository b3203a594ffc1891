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
