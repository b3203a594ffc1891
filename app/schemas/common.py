"""Schemas shared by every resource: errors, paging, plain messages."""

from __future__ import annotations

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate, validates_schema

from app.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from app.schemas.fields import Timestamp


class ErrorSchema(Schema):
    """Every error body: ``error`` always, the rest when they apply, plus context keys such as
    ``order_id`` or ``session_id`` (so the document allows additional properties)."""

    class Meta:
        unknown = INCLUDE

    error = fields.String(required=True, metadata={"example": "invalid order_id format"})
    details = fields.String(metadata={"example": "Price is required for LIMIT orders"})
    field = fields.String(metadata={"example": "price"})


class PageArgs(Schema):
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(1, MAX_LIMIT),
        metadata={"description": f"Results limit (default {DEFAULT_LIMIT}, max {MAX_LIMIT})"},
    )
    offset = fields.Integer(
        load_default=0,
        validate=validate.Range(0, 10_000_000),
        metadata={"description": "Pagination offset (default 0)"},
    )


class DateRangeArgs(Schema):
    """``from_date``/``to_date`` filters; a range that ends before it starts is a 400."""

    from_date = Timestamp()
    to_date = Timestamp()

    @validates_schema
    def _date_order(self, data, **kwargs):
        if data.get("from_date") and data.get("to_date") and data["from_date"] > data["to_date"]:
            raise ValidationError("from_date must not be after to_date", "from_date")


def page_of(args: dict) -> Page:
    """Pop limit/offset out of parsed query args."""
    return Page(limit=args.pop("limit"), offset=args.pop("offset"))


class PagedListSchema(Schema):
    """What every paged list carries besides its items."""

    count = fields.Integer(metadata={"description": "items on this page"})
    total = fields.Integer(
        metadata={
            "description": "items matching the filters on all pages: exact up to 10,000, "
            "the planner's estimate beyond (then total_exact is false)"
        }
    )
    total_exact = fields.Boolean()
