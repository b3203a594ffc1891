"""Schemas for the runtime configuration."""

from marshmallow import Schema, fields, validate

from app.schemas.fields import Amount, Choice

FRACTION = validate.Range(min=0, max=1, min_inclusive=False, error="must be in (0, 1]")


class ConfigDocumentSchema(Schema):
    config = fields.Dict(metadata={"description": "app, trading, risk and llm sections"})


class ConfigUpdateArgs(Schema):
    trading_mode = Choice(("paper", "live"), upper=False)
    initial_capital = Amount(positive=True)
    max_positions = fields.Integer(strict=True, validate=validate.Range(1, 1000))
    max_position_size = Amount(validate=FRACTION)
    max_daily_loss = Amount(validate=FRACTION)
    max_drawdown = Amount(validate=FRACTION)
    default_stop_loss = Amount(validate=FRACTION)
    default_take_profit = Amount(validate=FRACTION)
    min_confidence = Amount(validate=validate.Range(0, 1, error="must be in [0, 1]"))
    llm_approval_required = fields.Boolean(truthy={True}, falsy={False})
    llm_temperature = Amount(validate=validate.Range(0, 2, error="must be in [0, 2]"))
    llm_max_tokens = fields.Integer(strict=True, validate=validate.Range(1, 200_000))
    liquidity_participation = Amount(
        validate=validate.Range(0, 1, error="must be in [0, 1]; 0 turns the liquidity cap off")
    )
    max_price_age_seconds = Amount(
        validate=validate.Range(0, 86_400, min_inclusive=False, error="must be in (0, 86400]")
    )


class ConfigUpdatedSchema(Schema):
    message = fields.String()
    updates = fields.Dict()
    note = fields.String()
