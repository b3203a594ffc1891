"""The rows one engine transaction works on: changed in memory, written back in a few statements.

A :class:`Ledger` locks the sessions it touches (by id, so every path locks in the same order)
with all their open positions, applies fills with the pure portfolio arithmetic, and writes
every new and changed row back with multi-row statements in :meth:`Ledger.flush`. Arrivals are
accepted in batches of hundreds this way, and each tick is matched the same way, so both paths
share one statement of the fill, risk and loss-limit rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from peewee import fn

from app import process_metrics
from app.bulk import bulk_insert, bulk_update
from app.events import publish_error
from app.models import EquitySnapshot, MarketPrice, Order, Position, Trade, TradingSession, utcnow
from app.trading.entry_limits import check_adding_fill
from app.trading.limits import breach_event, update_loss_limits
from app.trading.liquidity import LiquidityBook
from app.trading.portfolio import Book, apply_fill
from app.trading.rules import (
    MAX_NOTIONAL,
    Rejected,
    Rules,
    market_fill_price,
    money,
    protective_levels,
)
from app.trading.valuation import book_of, prices_of, value_positions
from app.vocabulary import (
    PAPER_EXCHANGE,
    OrderStatus,
    OrderType,
    PositionSide,
    PositionStatus,
    Side,
)

ORDER_FIELDS = (
    Order.position, Order.status, Order.executed_quantity, Order.executed_quote_quantity,
    Order.filled_at, Order.expired_at, Order.accepted_at, Order.triggered_at,
    Order.error_message, Order.updated_at,
)  # fmt: skip
POSITION_FIELDS = (
    Position.status, Position.quantity, Position.closed_quantity, Position.entry_price,
    Position.exit_price, Position.exit_time, Position.exit_reason, Position.fees,
    Position.realized_pnl, Position.unrealized_pnl, Position.mark_price, Position.stop_loss,
    Position.take_profit, Position.updated_at,
)  # fmt: skip
SESSION_FIELDS = (
    TradingSession.cash, TradingSession.total_trades, TradingSession.peak_equity,
    TradingSession.day_start_equity, TradingSession.day_start_date, TradingSession.max_drawdown,
    TradingSession.status, TradingSession.status_reason, TradingSession.updated_at,
)  # fmt: skip


@dataclass
class SessionBook:
    """One locked session: its row, its open positions by symbol, its realized PnL so far."""

    row: TradingSession
    positions: dict[str, Position] = field(default_factory=dict)
    realized: Decimal = Decimal(0)
    sample: EquitySnapshot | None = None


class Ledger:
    """Sessions, positions, orders and trades of one transaction, written back by flush()."""

    def __init__(self, rules: Rules, exchange: str = PAPER_EXCHANGE):
        self.rules = rules
        self.exchange = exchange  # whose prices value the positions: a LIVE exchange's own
        self._reset()

    def _reset(self) -> None:
        """Forget everything: after a flush the rows are the database's again."""
        self.sessions: dict[uuid.UUID, SessionBook] = {}
        self.prices: dict[str, MarketPrice] = {}
        self.touched_orders: dict[uuid.UUID, Order] = {}
        self.new_orders: dict[uuid.UUID, Order] = {}
        self.new_positions: dict[uuid.UUID, Position] = {}
        self.changed_positions: dict[uuid.UUID, Position] = {}
        self.trades: list[Trade] = []
        self.rejections: list[str] = []  # their codes, for the rejected-orders metric
        self.events: list[tuple[str, str, str, dict]] = []
        self.liquidity = LiquidityBook(self.rules, self.prices)
        # Market time of what the fills happen at (a tick's time, the latest price's time):
        # equity samples carry it, so statistics follow the market's clock, not the engine's.
        self.market_time: datetime | None = None

    # -- loading -------------------------------------------------------------------------
    def lock_sessions(self, session_ids: Iterable) -> None:
        """Lock sessions (in id order) and their open positions, and load what they need."""
        wanted = sorted({sid for sid in session_ids if sid not in self.sessions}, key=str)
        if not wanted:
            return
        rows = (
            TradingSession.select()
            .where(TradingSession.id.in_(wanted))
            .order_by(TradingSession.id)
            .for_update()
        )
        for row in rows:
            self.sessions[row.id] = SessionBook(row)
        positions = (
            Position.of_sessions(wanted, PositionStatus.OPEN).order_by(Position.id).for_update()
        )
        for position in positions:
            self.sessions[position.session_id].positions[position.symbol] = position
        realized = (
            Position.select(Position.session, fn.SUM(Position.realized_pnl))
            .where(Position.session.in_(wanted))
            .group_by(Position.session)
            .tuples()
        )
        for session_id, total in realized:
            self.sessions[session_id].realized = Decimal(total)
        held = {symbol for book in self.sessions.values() for symbol in book.positions}
        self.load_prices(held)

    def load_prices(self, symbols: Iterable[str]) -> None:
        missing = set(symbols) - set(self.prices)
        self.prices.update(prices_of(missing, self.exchange))

    def session(self, session_id) -> SessionBook:
        return self.sessions[session_id]

    def price(self, symbol: str) -> MarketPrice | None:
        return self.prices.get(symbol)

    # -- orders ----------------------------------------------------------------------------
    def touch(self, order: Order) -> None:
        """Mark an existing order as changed, to be written back."""
        order.updated_at = utcnow()
        if order.id not in self.new_orders:
            self.touched_orders[order.id] = order

    def expire(self, order: Order, reason: str) -> None:
        order.status = OrderStatus.EXPIRED
        order.expired_at = utcnow()
        order.error_message = reason
        self.touch(order)

    def reject(self, order: Order, reason: str, code: str = "risk_limit") -> None:
        """Reject ``order`` with ``reason`` (its error_message); ``code`` classifies it."""
        order.status = OrderStatus.REJECTED
        order.error_message = reason
        self.rejections.append(code)
        self.touch(order)

    # -- valuation -------------------------------------------------------------------------
    def marks(self, book: SessionBook) -> dict[str, Decimal]:
        return {
            symbol: self.prices[symbol].price for symbol in book.positions if symbol in self.prices
        }

    def equity(self, book: SessionBook, marks: dict[str, Decimal]) -> tuple[Decimal, ...]:
        """(equity, signed position value, unrealized PnL) of a session at ``marks``."""
        value, unrealized = value_positions(book.positions.values(), marks)
        return money(book.row.cash + value), money(value), money(unrealized)

    # -- fills -----------------------------------------------------------------------------
    def fill(
        self,
        order: Order,
        price: Decimal,
        quantity: Decimal,
        reason: str | None = None,
        *,
        market: Decimal | None = None,
        fee: Decimal | None = None,
        executed_at: datetime | None = None,
    ) -> Trade:
        """Apply one fill: trade, order progress, position(s), cash, limits, equity sample.

        ``market`` is the market price the fill happened at (the tick, or the latest price):
        limits and the equity sample value the symbol there, not at the slipped fill price.
        ``fee`` given (in the quote currency): a fill that already happened on an exchange, at
        its fee and time, which no limit can refuse any more.
        """
        now = executed_at or utcnow()
        exchange_fill = fee is not None
        book = self.sessions[order.session_id]
        position = book.positions.get(order.symbol)
        before = book_of(position)
        price = money(price)
        if price * quantity > MAX_NOTIONAL and not exchange_fill:
            raise Rejected(
                f"notional {price * quantity:.2f} exceeds the largest fill the exchange takes "
                f"({MAX_NOTIONAL:,.0f})",
                reason="max_notional",
            )
        fee = money(price * quantity * self.rules.commission_rate if fee is None else fee)
        effect = apply_fill(before, order.side, quantity, price, fee)
        marks = {**self.marks(book), order.symbol: market if market is not None else price}
        if not exchange_fill:  # what an exchange has already done cannot be refused
            check_adding_fill(book, order, before, effect, quantity, price,
                              lambda: self.equity(book, marks)[0], self.rules)  # fmt: skip

        exit_reason = reason or ("closed by order" if order.source == "manual" else order.source)
        # A flip is two trades: the part that closes the old position and the part that opens
        # the new one, each attributed to its position, with the fee split by quantity.
        parts: list[tuple[Position | None, Decimal, Decimal]] = []
        if effect.closed is not None:
            self._close_row(book, position, effect.closed, price, now, exit_reason)
            if effect.open.quantity != 0:
                closing = abs(before.quantity)
                closing_fee = money(fee * closing / quantity)
                parts.append((position, closing, closing_fee))
                quantity, fee = quantity - closing, fee - closing_fee
        if effect.open.quantity != 0:
            if effect.opened_new:
                position = self._new_row(book, order, effect.open, price, now)
            else:
                self._update_row(book, position, effect.open, price)
        parts.append((position, quantity, fee))
        for attributed, part, part_fee in parts:
            trade = Trade(
                order=order.id,
                session=book.row.id,
                position=attributed.id if attributed is not None else None,
                symbol=order.symbol,
                exchange=order.exchange,
                side=order.side,
                price=price,
                quantity=part,
                quote_quantity=money(price * part),
                commission=part_fee,
                commission_asset=order.symbol.split("/")[1],
                executed_at=now,
                created_at=now,
            )
            self.trades.append(trade)
        quantity = sum((part for _, part, _ in parts), Decimal(0))
        order.executed_quantity += quantity
        order.executed_quote_quantity = money(order.executed_quote_quantity + price * quantity)
        if position is not None:
            order.position = position.id
        if order.executed_quantity >= order.quantity:
            order.status = OrderStatus.FILLED
            order.filled_at = now
        else:
            order.status = OrderStatus.PARTIALLY_FILLED
        self.touch(order)

        session = book.row
        session.cash = money(session.cash + effect.cash_delta)
        session.total_trades += len(parts)
        equity, value, unrealized = self.equity(book, marks)
        breach = update_loss_limits(session, equity, self.rules, now.date())
        if breach:
            self.events.append(breach_event(session, breach))
        book.sample = EquitySnapshot(
            session=session.id,
            sampled_at=self.market_time or now,
            equity=equity,
            cash=session.cash,
            position_value=value,
            realized_pnl=money(book.realized),
            unrealized_pnl=unrealized,
        )
        return trade

    def close_at_market(
        self, position: Position, last: Decimal, *, source: str, reason: str
    ) -> Order:
        """Close a whole position with a MARKET order filled at once."""
        side = Side.SELL if position.side == PositionSide.LONG else Side.BUY
        now = utcnow()
        order = Order(
            session=position.session_id,
            position=position.id,
            symbol=position.symbol,
            exchange=position.exchange,
            side=side,
            type=OrderType.MARKET,
            status=OrderStatus.NEW,
            quantity=position.quantity,
            source=source,
            placed_at=now,
            accepted_at=now,
            created_at=now,
            updated_at=now,
        )
        self.new_orders[order.id] = order
        price = market_fill_price(side, last, self.rules)
        self.fill(order, price, position.quantity, reason, market=last)
        return order

    # -- position rows ---------------------------------------------------------------------
    def _changed(self, book: SessionBook, position: Position, realized_before: Decimal) -> None:
        book.realized += position.realized_pnl - realized_before
        position.updated_at = utcnow()
        if position.id not in self.new_positions:
            self.changed_positions[position.id] = position

    def _close_row(
        self, book: SessionBook, position: Position, closed: Book, price, now, reason: str
    ) -> None:
        realized_before = position.realized_pnl
        position.status = PositionStatus.CLOSED
        position.quantity = closed.closed_quantity
        position.closed_quantity = closed.closed_quantity
        position.exit_price = money(closed.exit_price)
        position.exit_time = now
        position.exit_reason = reason
        position.fees = money(closed.fees)
        position.realized_pnl = money(closed.realized_pnl)
        position.unrealized_pnl = Decimal(0)
        position.mark_price = price
        del book.positions[position.symbol]
        self._changed(book, position, realized_before)

    def _new_row(self, book: SessionBook, order: Order, opened: Book, price, now) -> Position:
        stop_loss, take_profit = protective_levels(opened.side, opened.entry_price, self.rules)
        position = Position(
            session=book.row.id,
            symbol=order.symbol,
            exchange=order.exchange,
            side=opened.side,
            status=PositionStatus.OPEN,
            entry_price=money(opened.entry_price),
            quantity=abs(opened.quantity),
            entry_time=now,
            stop_loss=stop_loss,
            take_profit=take_profit,
            realized_pnl=money(opened.realized_pnl),
            unrealized_pnl=money(opened.unrealized(price)),
            fees=money(opened.fees),
            closed_quantity=Decimal(0),
            mark_price=price,
            entry_reason=f"{order.type} {order.side} order {order.id} ({order.source})",
            created_at=now,
            updated_at=now,
        )
        self.new_positions[position.id] = position
        book.positions[order.symbol] = position
        book.realized += position.realized_pnl
        return position

    def _update_row(self, book: SessionBook, position: Position, updated: Book, price) -> None:
        realized_before = position.realized_pnl
        averaged = updated.entry_price != position.entry_price
        position.quantity = abs(updated.quantity)
        position.entry_price = money(updated.entry_price)
        position.fees = money(updated.fees)
        position.realized_pnl = money(updated.realized_pnl)
        position.closed_quantity = updated.closed_quantity
        position.exit_price = money(updated.exit_price) if updated.exit_price is not None else None
        position.unrealized_pnl = money(updated.unrealized(price))
        position.mark_price = price
        if averaged:
            # Averaging in moves the entry, and the protective levels move with it.
            position.stop_loss, position.take_profit = protective_levels(
                position.side, position.entry_price, self.rules
            )
        self._changed(book, position, realized_before)

    # -- writing back ----------------------------------------------------------------------
    def flush(self) -> None:
        """Write every change in dependency order, a statement per table and kind."""
        # Closing rows first: a flip's new row must not meet the old one as a second OPEN row.
        bulk_update(Position, list(self.changed_positions.values()), POSITION_FIELDS)
        bulk_insert(Position, list(self.new_positions.values()))
        bulk_insert(Order, list(self.new_orders.values()))
        bulk_update(Order, list(self.touched_orders.values()), ORDER_FIELDS)
        bulk_insert(Trade, self.trades)
        process_metrics.count_fills(trade.symbol for trade in self.trades)
        process_metrics.count_rejections(self.rejections)
        dirty = [book for book in self.sessions.values() if book.sample is not None]
        now = utcnow()
        for book in dirty:
            book.row.updated_at = now
        bulk_update(TradingSession, [book.row for book in dirty], SESSION_FIELDS)
        bulk_insert(EquitySnapshot, [book.sample for book in dirty])
        self.liquidity.flush()
        for error, details, severity, metadata in self.events:
            publish_error(error, details, severity, **metadata)
        self._reset()
