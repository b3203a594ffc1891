"""Market data: latest price per symbol, candles, and tick ingestion (the manual feed)."""

from __future__ import annotations

from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint
from app.models import utcnow
from app.schemas.common import ErrorSchema
from app.schemas.market import (
    CandleArgs,
    CandleListSchema,
    PriceEnvelopeSchema,
    PriceListArgs,
    PriceListSchema,
    PriceResultSchema,
    TickArgs,
)
from app.symbols import normalize_symbol
from app.trading import market
from app.trading.candles import recent_candles

blp = ApiBlueprint("market", __name__, url_prefix="/api/v1/market", description="Market data")


@blp.get("/prices")
@requires(Role.VIEWER)
@blp.arguments(PriceListArgs, location="query")
@blp.response(200, PriceListSchema)
def list_prices(args: dict):
    """Latest price of every symbol (or of the symbols given)."""
    found = market.latest_prices(args.get("symbol"))
    return {"prices": found, "count": len(found)}


@blp.get("/prices/<symbol:symbol>")
@requires(Role.VIEWER)
@blp.response(200, PriceEnvelopeSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No price yet for the symbol")
def get_price(symbol: str):
    """Latest price of one symbol."""
    return {"price": market.latest_price(normalize_symbol(symbol))}


@blp.post("/prices")
@requires(Role.TRADER, audited=False)
@blp.arguments(TickArgs)
@blp.response(201, PriceResultSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid tick")
def ingest_tick(args: dict):
    """Ingest a price tick; an older tick never replaces a newer price."""
    price = market.record_tick(
        args["symbol"], args["price"], volume=args["volume"], timestamp=args["timestamp"]
    )
    return {"price": price, "message": "Tick recorded"}


@blp.get("/candles/<symbol:symbol>")
@requires(Role.VIEWER)
@blp.arguments(CandleArgs, location="query")
@blp.response(200, CandleListSchema)
def list_candles(args: dict, symbol: str):
    """OHLCV candles of one symbol built from its ticks, oldest first; the last one may still
    be forming. A symbol without ticks in the window has no candles (200, empty list)."""
    symbol = normalize_symbol(symbol)
    candles = recent_candles(symbol, args["interval"], args["limit"], utcnow())
    return {"symbol": symbol, "interval": args["interval"], "candles": candles,
            "count": len(candles)}  # fmt: skip
