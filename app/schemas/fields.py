"""Reusable marshmallow fields: strict money, case-insensitive enums, UUIDs, symbols, timestamps."""

from __future__ import annotations

import decimal
import uuid
from datetime import UTC

from marshmallow import ValidationError, fields, validate

from app.errors import InvalidInput
from app.models import format_timestamp
from app.symbols import SYMBOL_PATTERN, normalize_symbol

MAX_DECIMAL_PLACES = 18
# Far above any real price, quantity or capital, far below NUMERIC(36,18)'s ceiling.
MAX_AMOUNT = decimal.Decimal("1e15")


class Amount(fields.Decimal):
    """A finite decimal number (JSON number or numeric string) within sane bounds.

    ``positive`` means > 0, otherwise >= 0 unless ``allow_negative``. Booleans, NaN, Infinity,
    more than 18 decimal places and magnitudes above 10^15 are refused rather than rounded.
    """

    def __init__(self, *, positive: bool = False, allow_negative: bool = False, **kwargs):
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault("type", "number")
        # Declared so that generated and hand-written clients stay within what is accepted
        # (a Range validator, if any, declares its own, tighter bounds).
        validators = kwargs.get("validate")
        validators = validators if isinstance(validators, list | tuple) else [validators]
        if not any(isinstance(v, validate.Range) for v in validators):
            metadata.setdefault("maximum", float(MAX_AMOUNT))
            metadata.setdefault("minimum", -float(MAX_AMOUNT) if allow_negative else 0)
            if positive:
                metadata.setdefault("exclusiveMinimum", True)
        super().__init__(allow_nan=False, as_string=False, **kwargs)
        self.positive = positive
        self.allow_negative = allow_negative

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        number = super()._validated(value)
        if number is None:
            return number
        if not number.is_finite():
            raise self.make_error("special")
        if abs(number) > MAX_AMOUNT:
            raise ValidationError(f"must not exceed {MAX_AMOUNT:,.0f} in magnitude")
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
            raise ValidationError(f"must have at most {MAX_DECIMAL_PLACES} decimal places")
        if self.positive and number <= 0:
            raise ValidationError("must be greater than 0")
        if not self.positive and not self.allow_negative and number < 0:
            raise ValidationError("must be greater than or equal to 0")
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else float(value)


class Number(fields.Float):
    """Output-only number: Decimal inside, float at the JSON edge."""


class Choice(fields.String):
    """A string enum accepted in any case and stored in the canonical case."""

    def __init__(self, choices, *, upper: bool = True, **kwargs):
        self.choices = tuple(choices)
        self.upper = upper
        kwargs.setdefault("metadata", {})["enum"] = list(self.choices)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        canonical = text.strip().upper() if self.upper else text.strip().lower()
        if canonical not in self.choices:
            raise ValidationError(f"must be one of: {', '.join(self.choices)}")
        return canonical


class Uuid(fields.String):
    """A UUID whose error reads ``invalid <field> format``, as the spec words it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})["format"] = "uuid"
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return uuid.UUID(str(super()._deserialize(value, attr, data, **kwargs)))
        except (ValueError, ValidationError):
            raise ValidationError(f"invalid {self.data_key or self.name} format") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)


class Symbol(fields.String):
    """A trading pair, normalised to ``BASE/QUOTE``."""

    def __init__(self, **kwargs):
        metadata = kwargs.setdefault("metadata", {})
        metadata.setdefault("example", "BTC/USDT")
        metadata.setdefault("pattern", SYMBOL_PATTERN)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            return normalize_symbol(text)
        except InvalidInput:
            raise ValidationError("must be a trading pair such as BTC/USDT") from None


class Timestamp(fields.AwareDateTime):
    """RFC 3339 timestamp: naive input is taken as UTC, output is always ``...Z``."""

    def __init__(self, **kwargs):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else format_timestamp(value)

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        return parsed.astimezone(UTC)
