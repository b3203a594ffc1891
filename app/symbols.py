"""Trading-pair symbols: every accepted spelling normalises to upper-case ``BASE/QUOTE``."""

from __future__ import annotations

import re

from app.errors import InvalidInput

_SYMBOL = re.compile(r"^([A-Za-z0-9]{1,20})[/-]([A-Za-z0-9]{1,20})$")
# The same rule for the OpenAPI document (without the groups).
SYMBOL_PATTERN = r"^[A-Za-z0-9]{1,20}[/-][A-Za-z0-9]{1,20}$"


def normalize_symbol(raw: str, field: str = "symbol") -> str:
    """Return ``BASE/QUOTE`` for ``btc/usdt``, ``BTC-USDT`` or ``BTC%2FUSDT`` (decoded upstream)."""
    match = _SYMBOL.match(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        raise InvalidInput(
            f"invalid {field} format",
            details=f"{raw!r} is not a trading pair; use BASE/QUOTE such as BTC/USDT",
            field=field,
        )
    return f"{match.group(1).upper()}/{match.group(2).upper()}"
