"""Latest market prices: the ticks every feed (simulated, replay, manual) writes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from peewee import EXCLUDED

from app.db import db
from app.errors import NotFound
from app.models import MarketPrice, MarketTick, utcnow


def record_tick(
    symbol: str,
    price: Decimal,
    *,
    volume: Decimal | None = None,
    timestamp: datetime | None = None,
    source: str = "manual",
) -> MarketPrice:
    """Append the tick for the engine and upsert the latest price.

    An older tick never overwrites a newer latest price; the engine still sees every tick.
    """
    now = utcnow()
    tick_time = timestamp or now
    with db.atomic():
        tick = MarketTick.create(
            symbol=symbol, price=price, volume=volume, source=source, tick_time=tick_time,
            created_at=now,
        )  # fmt: skip
        MarketPrice.insert(
            symbol=symbol,
            price=price,
            volume=volume,
            source=source,
            price_time=tick_time,
            updated_at=now,
            tick_id=tick.id,
            liquidity_left=None,
        ).on_conflict(
            conflict_target=[MarketPrice.symbol],
            update={
                MarketPrice.price: EXCLUDED.price,
                MarketPrice.volume: EXCLUDED.volume,
                MarketPrice.source: EXCLUDED.source,
                MarketPrice.price_time: EXCLUDED.price_time,
                MarketPrice.updated_at: EXCLUDED.updated_at,
                MarketPrice.tick_id: EXCLUDED.tick_id,
                MarketPrice.liquidity_left: EXCLUDED.liquidity_left,
            },
            where=(MarketPrice.price_time <= EXCLUDED.price_time),
        ).execute()
        return MarketPrice.get_by_id(symbol)


def latest_prices(symbols: list[str] | None = None) -> list[MarketPrice]:
    """Latest price per symbol, alphabetical."""
    query = MarketPrice.select().order_by(MarketPrice.symbol)
    if symbols:
        query = query.where(MarketPrice.symbol.in_(symbols))
    return list(query)


def latest_price(symbol: str) -> MarketPrice:
    """Latest price for one symbol or 404."""
    price = MarketPrice.get_or_none(MarketPrice.symbol == symbol)
    if price is None:
        raise NotFound("no price for symbol", symbol=symbol)
    return price
