"""Path parameter converters: they match as loosely as before (a malformed value still reaches
the view, which answers 400 naming it), but document the form a valid value takes."""

from __future__ import annotations

from werkzeug.routing import BaseConverter, PathConverter

from app.symbols import SYMBOL_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class IdConverter(BaseConverter):
    """A UUID path segment (``<id:order_id>``)."""


class NameConverter(BaseConverter):
    """An agent or key name (``<name:name>``)."""


class SymbolConverter(PathConverter):
    """A trading pair, raw ``BTC/USDT`` (hence a path), URL-encoded or ``BTC-USDT``."""


CONVERTERS = {
    "id": (IdConverter, {"type": "string", "format": "uuid"}),
    "name": (NameConverter, {"type": "string", "pattern": NAME_PATTERN}),
    "symbol": (SymbolConverter, {"type": "string", "pattern": SYMBOL_PATTERN}),
}


def register_converters(app, api) -> None:
    """Make the converters known to Flask's router and to the OpenAPI document."""
    for name, (converter, schema) in CONVERTERS.items():
        app.url_map.converters[name] = converter
        api.register_converter(converter, lambda _converter, schema=schema: dict(schema))
