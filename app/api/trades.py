"""Fills (trades): list with filters."""

from __future__ import annotations

from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint
from app.schemas.common import page_of
from app.schemas.trades import TradeListArgs, TradeListSchema
from app.trading import trades

blp = ApiBlueprint("trades", __name__, url_prefix="/api/v1/trades", description="Fills")


@blp.get("")
@requires(Role.VIEWER)
@blp.arguments(TradeListArgs, location="query")
@blp.response(200, TradeListSchema)
def list_trades(args: dict):
    """Get fills, most recent first, filtered by session_id, order_id and symbol."""
    page = page_of(args)
    return trades.list_trades(trades.TradeFilter(**args), page).body("trades")
