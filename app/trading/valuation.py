"""What a session is worth: positions as books, marks, equity. Reads only; no matching."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from peewee import fn

from app.db import db
from app.models import MarketPrice, Position, TradingSession
from app.trading.portfolio import Book
from app.trading.rules import money
from app.vocabulary import PAPER_EXCHANGE, PositionSide

# LIVE sessions are valued at their own exchange's prices (written by the exchange process).
EXCHANGE_PRICES_SQL = """
SELECT symbol, price, price_time FROM exchange_prices
 WHERE exchange = %s AND symbol = ANY(%s)
"""


def book_of(position: Position | None) -> Book:
    """A position row as the signed numbers the portfolio arithmetic works on."""
    if position is None:
        return Book()
    direction = Decimal(1) if position.side == PositionSide.LONG else Decimal(-1)
    return Book(
        quantity=position.quantity * direction,
        entry_price=position.entry_price,
        fees=position.fees,
        realized_pnl=position.realized_pnl,
        closed_quantity=position.closed_quantity,
        exit_price=position.exit_price,
    )


def latest_price(symbol: str) -> MarketPrice | None:
    return MarketPrice.get_or_none(MarketPrice.symbol == symbol)


def prices_of(symbols: Iterable[str], exchange: str = PAPER_EXCHANGE) -> dict[str, MarketPrice]:
    """Latest price rows of ``symbols`` (those that have one), in one query: the market feed's,
    or for a LIVE ``exchange`` that exchange's own (as unsaved rows without a volume)."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    if exchange != PAPER_EXCHANGE:
        rows = db.execute_sql(EXCHANGE_PRICES_SQL, (exchange, wanted)).fetchall()
        return {
            symbol: MarketPrice(symbol=symbol, price=price, price_time=at, source=exchange)
            for symbol, price, at in rows
        }
    return {row.symbol: row for row in MarketPrice.select().where(MarketPrice.symbol.in_(wanted))}


def marks_for(session: TradingSession) -> dict[str, Decimal]:
    """Latest price of every symbol the session holds (a LIVE session: on its exchange)."""
    symbols = Position.open_for(session.id).select(Position.symbol)
    if session.exchange != PAPER_EXCHANGE:
        held = [symbol for (symbol,) in symbols.tuples()]
        return {s: row.price for s, row in prices_of(held, session.exchange).items()}
    return {
        row.symbol: row.price for row in MarketPrice.select().where(MarketPrice.symbol.in_(symbols))
    }


def value_positions(
    positions: Iterable[Position], marks: dict[str, Decimal]
) -> tuple[Decimal, Decimal]:
    """(signed position value, unrealized PnL) of open positions at ``marks``.

    A symbol without a mark is valued at its last mark, or its entry price.
    """
    value = Decimal(0)
    unrealized = Decimal(0)
    for position in positions:
        book = book_of(position)
        mark = marks.get(position.symbol, position.mark_price or position.entry_price)
        value += book.quantity * mark
        unrealized += book.unrealized(mark)
    return value, unrealized


def equity_of(
    session: TradingSession, marks: dict[str, Decimal]
) -> tuple[Decimal, Decimal, Decimal]:
    """(equity, signed position value, unrealized PnL) of the session at ``marks``."""
    value, unrealized = value_positions(Position.open_for(session.id), marks)
    return money(session.cash + value), money(value), money(unrealized)


def open_positions_elsewhere(session_id, symbol: str) -> int:
    """Open positions the session holds in symbols other than ``symbol``."""
    return Position.open_for(session_id).where(Position.symbol != symbol).count()


def market_time(symbols: Iterable[str], exchange: str = PAPER_EXCHANGE) -> datetime | None:
    """The market's clock for these symbols: the time of the latest tick among them."""
    wanted = sorted(set(symbols))
    if not wanted:
        return None
    if exchange != PAPER_EXCHANGE:
        times = [row.price_time for row in prices_of(wanted, exchange).values()]
        return max(times, default=None)
    return (
        MarketPrice.select(fn.MAX(MarketPrice.price_time))
        .where(MarketPrice.symbol.in_(wanted))
        .scalar()
    )
