"""Fill (trade) queries."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.models import Trade
from app.pagination import Listing, Page


@dataclass(frozen=True)
class TradeFilter:
    session_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    symbol: str | None = None


def list_trades(filters: TradeFilter, page: Page) -> Listing:
    """Fills, most recent first."""
    query = Trade.select().order_by(Trade.executed_at.desc(), Trade.id)
    if filters.session_id:
        query = query.where(Trade.session == filters.session_id)
    if filters.order_id:
        query = query.where(Trade.order == filters.order_id)
    if filters.symbol:
        query = query.where(Trade.symbol == filters.symbol)
    return Listing.of(query, page)
