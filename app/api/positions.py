"""Positions: list with filters, latest by symbol."""

from __future__ import annotations

from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint
from app.schemas.common import ErrorSchema, page_of
from app.schemas.positions import (
    LatestPositionArgs,
    PositionEnvelopeSchema,
    PositionListArgs,
    PositionListSchema,
)
from app.symbols import normalize_symbol
from app.trading import positions

blp = ApiBlueprint("positions", __name__, url_prefix="/api/v1/positions", description="Positions")


@blp.get("")
@requires(Role.VIEWER)
@blp.arguments(PositionListArgs, location="query")
@blp.response(200, PositionListSchema)
def list_positions(args: dict):
    """Get positions (open by default; status=closed|all), optionally by session and symbol."""
    page = page_of(args)
    return positions.list_positions(positions.PositionFilter(**args), page).body("positions")


@blp.get("/<symbol:symbol>")
@requires(Role.VIEWER)
@blp.arguments(LatestPositionArgs, location="query")
@blp.response(200, PositionEnvelopeSchema)
@blp.alt_response(404, schema=ErrorSchema, description="Position not found for symbol")
def latest_position(args: dict, symbol: str):
    """Get the latest position for a symbol (BTC/USDT, BTC%2FUSDT or BTC-USDT)."""
    position = positions.latest_position(normalize_symbol(symbol), args.get("session_id"))
    return {"position": position}
