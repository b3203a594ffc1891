"""UUID parsing with the spec's error message (``invalid order_id format``)."""

from __future__ import annotations

import uuid

from app.errors import InvalidInput


def parse_uuid(raw: str, name: str) -> uuid.UUID:
    """Parse a canonical UUID or raise 400 ``invalid <name> format``."""
    try:
        value = uuid.UUID(str(raw))
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"invalid {name} format", field=name) from None
    return value
