"""The paper exchange: fills orders against ticks, keeps positions, cash and risk limits.

Only the engine calls :func:`process_pending` (one engine per database); closing positions when
a session stops also runs here, from the API. Every change happens in a transaction that locks
the order and the session row it touches, so a fill can never be applied twice, even by two
engines, and a cancel never races a fill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from peewee import fn

from app.db import CONNECTION_ERRORS, db
from app.events import publish_error
from app.models import (
    ACTIVE_SESSION_STATUSES,
    EquitySnapshot,
    MarketPrice,
    MarketTick,
    Order,
    Position,
    Trade,
    TradingSession,
    utcnow,
)
from app.runtime_config import trading_rules
from app.trading.portfolio import Book, FillEffect, apply_fill, exposure_increase

MONEY = Decimal("1e-18")
LIMIT_TYPES = ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")
PROFIT_TYPES = ("TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
TRIGGERED_TYPES = STOP_TYPES + PROFIT_TYPES


def money(value: Decimal) -> Decimal:
    """Round to the database's 18 decimal places, so memory and rows always agree."""
    return value.quantize(MONEY, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Rules:
    """The exchange and risk settings in force for one processing pass."""

    slippage: Decimal = Decimal("0.0005")
    commission_rate: Decimal = Decimal("0.001")
    participation: Decimal = Decimal(0)
    max_position_size: Decimal = Decimal("0.2")
    max_positions: int = 3
    max_daily_loss: Decimal = Decimal("0.05")
    max_drawdown: Decimal = Decimal("0.15")
    default_stop_loss: Decimal = Decimal("0.02")
    default_take_profit: Decimal = Decimal("0.05")

    @classmethod
    def current(cls) -> Rules:
        """Read the defaults and the overrides stored in the database."""
        return cls.from_config(trading_rules())

    @classmethod
    def from_config(cls, config: dict) -> Rules:
        """Build the rules from an already loaded configuration document."""
        exchange, risk = config["exchange"], config["risk"]

        def dec(value) -> Decimal:
            return Decimal(str(value))

        return cls(
            slippage=dec(exchange["slippage_bps"]) / 10_000,
            commission_rate=dec(exchange["commission_rate"]),
            participation=dec(exchange["liquidity_participation"]),
            max_position_size=dec(risk["max_position_size"]),
            max_positions=int(config["trading"]["max_positions"]),
            max_daily_loss=dec(risk["max_daily_loss"]),
            max_drawdown=dec(risk["max_drawdown"]),
            default_stop_loss=dec(risk["default_stop_loss"]),
            default_take_profit=dec(risk["default_take_profit"]),
        )


class Rejected(Exception):
    """The fill would break a limit; the message names it."""


# -- prices ---------------------------------------------------------------------------------


def market_fill_price(side: str, last: Decimal, rules: Rules) -> Decimal:
    """Last price moved against the taker by the configured slippage."""
    factor = 1 + rules.slippage if side == "BUY" else 1 - rules.slippage
    return money(last * factor)


def marketable_limit_price(order: Order, last: Decimal, rules: Rules) -> Decimal:
    """A limit that is marketable when it starts working takes the market, never worse than
    its limit (resting limits that a later tick crosses fill at the limit itself)."""
    slipped = market_fill_price(order.side, last, rules)
    return min(order.price, slipped) if order.side == "BUY" else max(order.price, slipped)


def limit_crossed(side: str, limit: Decimal, price: Decimal) -> bool:
    return price <= limit if side == "BUY" else price >= limit


def stop_triggered(order: Order, price: Decimal) -> bool:
    """STOP_LOSS fires when price moves against the order's side, TAKE_PROFIT in its favour."""
    rising = price >= order.stop_price
    falling = price <= order.stop_price
    if order.type in STOP_TYPES:
        return rising if order.side == "BUY" else falling
    return falling if order.side == "BUY" else rising


def latest_price(symbol: str) -> MarketPrice | None:
    return MarketPrice.get_or_none(MarketPrice.symbol == symbol)


# -- the processing pass -------------------------------------------------------------------


def process_pending(rules: Rules | None = None, max_ticks: int = 500) -> int:
    """Work through unprocessed ticks in arrival order, then newly placed orders.

    A batch of ticks is claimed (marked processed) and worked in one transaction, so a crash
    resumes exactly where it stopped. If the batch fails it is redone one tick per transaction:
    a tick that still fails is reported as an error event and skipped, never retried forever.
    Returns the number of ticks and orders handled.
    """
    rules = rules or Rules.current()
    handled = 0
    try:
        with db.atomic():
            batch = claim_ticks(max_ticks)
            for tick in batch:
                process_tick(tick, rules)
            handled += len(batch)
    except CONNECTION_ERRORS:
        raise
    except Exception:
        handled += process_ticks_one_by_one(rules, max_ticks)
    handled += accept_new_orders(rules)
    return handled


def claim_ticks(limit: int, only_id: int | None = None) -> list[MarketTick]:
    """Mark the oldest unprocessed ticks processed and return them in arrival order."""
    pending = (
        MarketTick.select(MarketTick.id)
        .where(MarketTick.processed_at.is_null())
        .order_by(MarketTick.id)
        .limit(limit)
        .for_update(of=MarketTick, nowait=False)
    )
    if only_id is not None:
        pending = pending.where(MarketTick.id == only_id)
    claimed = (
        MarketTick.update(processed_at=utcnow())
        .where(MarketTick.id.in_(pending))
        .returning(MarketTick)
        .execute()
    )
    return sorted(claimed, key=lambda tick: tick.id)


def process_ticks_one_by_one(rules: Rules, limit: int) -> int:
    handled = 0
    for (tick_id,) in (
        MarketTick.select(MarketTick.id)
        .where(MarketTick.processed_at.is_null())
        .order_by(MarketTick.id)
        .limit(limit)
        .tuples()
    ):
        try:
            with db.atomic():
                for tick in claim_ticks(1, only_id=tick_id):
                    process_tick(tick, rules)
                    handled += 1
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:
            with db.atomic():
                claim_ticks(1, only_id=tick_id)
                publish_error(
                    "Tick could not be processed",
                    f"{type(exc).__name__}: {exc}",
                    "high",
                    tick_id=tick_id,
                )
    return handled


def accept_new_orders(rules: Rules) -> int:
    """First look at each new order: fill it now, let it rest, or expire it."""
    accepted = 0
    while True:
        with db.atomic():
            order = (
                Order.select()
                .where(Order.accepted_at.is_null(), Order.status == "NEW")
                .order_by(Order.placed_at)
                .for_update(nowait=False)
                .first()
            )
            if order is None:
                return accepted
            order.accepted_at = utcnow()
            order.save()
            on_arrival(order, rules)
            accepted += 1


def on_arrival(order: Order, rules: Rules) -> None:
    last = latest_price(order.symbol)
    volume = last.volume if last is not None else None
    if order.type in TRIGGERED_TYPES:
        if last is not None and stop_triggered(order, last.price):
            trigger(order, last.price, volume, rules)
        return
    if last is None:
        if order.time_in_force != "GTC":
            expire(order, "no market price yet for an immediate order")
        return
    if order.type == "MARKET":
        execute(order, market_fill_price(order.side, last.price, rules), volume, rules)
        return
    if limit_crossed(order.side, order.price, last.price):
        execute(order, marketable_limit_price(order, last.price, rules), volume, rules)
    elif order.time_in_force != "GTC":
        expire(order, f"limit {order.price} not marketable at {last.price}")


def process_tick(tick: MarketTick, rules: Rules) -> None:
    """Match the symbol's working orders against one tick, then protective exits."""
    available = (
        money(tick.volume * rules.participation)
        if rules.participation > 0 and tick.volume is not None
        else None
    )
    for order in matching_orders(tick):
        if available is not None and available <= 0:
            break
        if order.type in TRIGGERED_TYPES and order.triggered_at is None:
            filled = trigger(order, tick.price, available, rules, liquidity_is_cap=True)
        elif order.type in LIMIT_TYPES:
            filled = execute(order, order.price, available, rules, liquidity_is_cap=True)
        else:
            price = market_fill_price(order.side, tick.price, rules)
            filled = execute(order, price, available, rules, liquidity_is_cap=True)
        if available is not None:
            available -= filled
    protective_exits(tick, rules)


# Built once: these run for every tick, and assembling them through the ORM cost more than
# executing them. Placeholders: symbol, then the tick price six times.
MATCHING_ORDERS_SQL = """
SELECT * FROM orders
 WHERE symbol = %s
   AND status IN ('NEW', 'PARTIALLY_FILLED')
   AND accepted_at IS NOT NULL
   AND (
        ((type = 'LIMIT'
          OR (type IN ('STOP_LOSS_LIMIT', 'TAKE_PROFIT_LIMIT') AND triggered_at IS NOT NULL))
         AND ((side = 'BUY' AND price >= %s) OR (side = 'SELL' AND price <= %s)))
     OR type = 'MARKET'
     OR (type IN ('STOP_LOSS', 'TAKE_PROFIT') AND triggered_at IS NOT NULL)
     OR (triggered_at IS NULL AND type IN ('STOP_LOSS', 'STOP_LOSS_LIMIT')
         AND ((side = 'BUY' AND stop_price <= %s) OR (side = 'SELL' AND stop_price >= %s)))
     OR (triggered_at IS NULL AND type IN ('TAKE_PROFIT', 'TAKE_PROFIT_LIMIT')
         AND ((side = 'BUY' AND stop_price >= %s) OR (side = 'SELL' AND stop_price <= %s)))
   )
 ORDER BY placed_at, id
 FOR UPDATE
"""

# Placeholders: symbol, then the tick price four times. NULL levels never match.
PROTECTIVE_EXITS_SQL = """
SELECT * FROM positions
 WHERE symbol = %s AND status = 'OPEN'
   AND ((side = 'LONG' AND (stop_loss >= %s OR take_profit <= %s))
     OR (side = 'SHORT' AND (stop_loss <= %s OR take_profit >= %s)))
 FOR UPDATE
"""


def matching_orders(tick: MarketTick) -> list[Order]:
    """Working orders this tick can fill or trigger, oldest first, locked for this pass."""
    return list(Order.raw(MATCHING_ORDERS_SQL, tick.symbol, *[tick.price] * 6))


def trigger(
    order: Order,
    price: Decimal,
    available: Decimal | None,
    rules: Rules,
    *,
    liquidity_is_cap: bool = False,
) -> Decimal:
    """A stop or take-profit fired: market types fill now, *_LIMIT types rest at their limit."""
    order.triggered_at = utcnow()
    order.save()
    if order.type in ("STOP_LOSS", "TAKE_PROFIT"):
        fill_price = market_fill_price(order.side, price, rules)
        return execute(order, fill_price, available, rules, liquidity_is_cap=liquidity_is_cap)
    if limit_crossed(order.side, order.price, price):
        fill_price = marketable_limit_price(order, price, rules)
        return execute(order, fill_price, available, rules, liquidity_is_cap=liquidity_is_cap)
    if order.time_in_force != "GTC":
        expire(order, f"triggered at {price}; limit {order.price} not marketable")
    return Decimal(0)


def expire(order: Order, reason: str) -> None:
    order.status = "EXPIRED"
    order.expired_at = utcnow()
    order.error_message = reason
    order.save()


def execute(
    order: Order,
    price: Decimal,
    volume: Decimal | None,
    rules: Rules,
    *,
    liquidity_is_cap: bool = False,
) -> Decimal:
    """Fill as much of ``order`` as liquidity allows at ``price``; returns the quantity filled.

    ``volume`` is the tick volume (on arrival) or, with ``liquidity_is_cap``, the quantity still
    available in this tick. IOC keeps what it got and expires the rest; FOK fills completely or
    expires untouched.
    """
    remaining = order.quantity - order.executed_quantity
    quantity = remaining
    if rules.participation > 0 and volume is not None:
        cap = volume if liquidity_is_cap else money(volume * rules.participation)
        quantity = min(remaining, cap)
    if order.time_in_force == "FOK" and quantity < remaining:
        expire(order, f"fill-or-kill: only {quantity} of {remaining} available")
        return Decimal(0)
    if quantity <= 0:
        if order.time_in_force != "GTC":
            expire(order, "no liquidity")
        return Decimal(0)
    try:
        fill(order, price, quantity, rules)
    except Rejected as rejection:
        order.status = "REJECTED"
        order.error_message = str(rejection)
        order.save()
        return Decimal(0)
    if order.time_in_force == "IOC" and order.status == "PARTIALLY_FILLED":
        expire(order, f"immediate-or-cancel: {order.quantity - order.executed_quantity} unfilled")
    return quantity


# -- fills, positions, cash ---------------------------------------------------------------


def book_of(position: Position | None) -> Book:
    if position is None:
        return Book()
    direction = Decimal(1) if position.side == "LONG" else Decimal(-1)
    return Book(
        quantity=position.quantity * direction,
        entry_price=position.entry_price,
        fees=position.fees,
        realized_pnl=position.realized_pnl,
        closed_quantity=position.closed_quantity,
        exit_price=position.exit_price,
    )


def open_position(session_id, symbol: str) -> Position | None:
    return (
        Position.select()
        .where(Position.session == session_id, Position.symbol == symbol, Position.status == "OPEN")
        .for_update()
        .first()
    )


def open_positions_elsewhere(session_id, symbol: str) -> int:
    """Open positions the session holds in symbols other than ``symbol``."""
    return (
        Position.select()
        .where(Position.session == session_id, Position.status == "OPEN", Position.symbol != symbol)
        .count()
    )


def marks_for(session: TradingSession) -> dict[str, Decimal]:
    """Latest price of every symbol the session holds."""
    symbols = Position.select(Position.symbol).where(
        Position.session == session.id, Position.status == "OPEN"
    )
    return {
        row.symbol: row.price for row in MarketPrice.select().where(MarketPrice.symbol.in_(symbols))
    }


def equity_of(
    session: TradingSession, marks: dict[str, Decimal]
) -> tuple[Decimal, Decimal, Decimal]:
    """(equity, signed position value, unrealized PnL) of the session at ``marks``."""
    value = Decimal(0)
    unrealized = Decimal(0)
    for position in Position.select().where(
        Position.session == session.id, Position.status == "OPEN"
    ):
        book = book_of(position)
        mark = marks.get(position.symbol, position.mark_price or position.entry_price)
        value += book.quantity * mark
        unrealized += book.unrealized(mark)
    return money(session.cash + value), money(value), money(unrealized)


def check_fill_risk(
    session: TradingSession,
    order: Order,
    book: Book,
    effect: FillEffect,
    quantity: Decimal,
    price: Decimal,
    rules: Rules,
) -> None:
    """Refuse the exposure-increasing part of a fill that breaks a limit."""
    if exposure_increase(book, order.side, quantity) <= 0:
        return  # reducing or closing is always allowed
    if session.status == "PAUSED":
        raise Rejected(
            f"session paused ({session.status_reason}): new entries are refused; "
            "resume with POST /api/v1/trade/resume"
        )
    if session.status != "RUNNING":
        raise Rejected(f"session is {session.status}")
    if order.side == "BUY" and session.cash + effect.cash_delta < 0:
        need = -effect.cash_delta
        raise Rejected(f"insufficient cash: the fill needs {need:.8f}, cash is {session.cash:.8f}")
    marks = marks_for(session)
    marks[order.symbol] = price
    equity, _, _ = equity_of(session, marks)
    notional = abs(effect.open.quantity) * price
    limit = rules.max_position_size * equity
    if notional > limit:
        raise Rejected(
            f"max_position_size: the position would be {notional:.2f} "
            f"({notional / equity:.1%} of equity {equity:.2f}); the limit is "
            f"{rules.max_position_size:.1%}"
            if equity > 0
            else "max_position_size: equity is not positive"
        )
    if effect.opened_new:
        others = open_positions_elsewhere(session.id, order.symbol)
        if others + 1 > rules.max_positions:
            raise Rejected(
                f"max_positions: the session already holds {others} open positions; "
                f"the limit is {rules.max_positions}"
            )


def fill(
    order: Order, price: Decimal, quantity: Decimal, rules: Rules, reason: str | None = None
) -> Trade:
    """Apply one fill: trade row, order progress, position(s), session cash, equity sample."""
    now = utcnow()
    session = (
        TradingSession.select().where(TradingSession.id == order.session_id).for_update().get()
    )
    position = open_position(session.id, order.symbol)
    book = book_of(position)
    price = money(price)
    fee = money(price * quantity * rules.commission_rate)
    effect = apply_fill(book, order.side, quantity, price, fee)
    check_fill_risk(session, order, book, effect, quantity, price, rules)

    exit_reason = reason or ("closed by order" if order.source == "manual" else order.source)
    if effect.closed is not None:
        close_row(position, effect.closed, price, now, exit_reason)
    if effect.open.quantity != 0:
        if effect.opened_new:
            position = new_row(session, order, effect.open, price, now, rules)
        else:
            update_row(position, effect.open, price, rules)

    trade = Trade.create(
        order=order.id,
        session=session.id,
        position=position.id if position is not None else None,
        symbol=order.symbol,
        exchange=order.exchange,
        side=order.side,
        price=price,
        quantity=quantity,
        quote_quantity=money(price * quantity),
        commission=fee,
        commission_asset=order.symbol.split("/")[1],
        executed_at=now,
    )
    order.executed_quantity += quantity
    order.executed_quote_quantity = money(order.executed_quote_quantity + price * quantity)
    order.position = position.id if position is not None else order.position_id
    if order.executed_quantity >= order.quantity:
        order.status = "FILLED"
        order.filled_at = now
    else:
        order.status = "PARTIALLY_FILLED"
    order.save()

    session.cash = money(session.cash + effect.cash_delta)
    session.total_trades += 1
    session.save()
    marks = marks_for(session)
    marks[order.symbol] = price
    record_equity(session, marks, now)
    enforce_loss_limits(session, marks, rules)
    return trade


def close_row(position: Position, closed: Book, price: Decimal, now: datetime, reason: str) -> None:
    position.status = "CLOSED"
    position.quantity = closed.closed_quantity
    position.closed_quantity = closed.closed_quantity
    position.exit_price = money(closed.exit_price)
    position.exit_time = now
    position.exit_reason = reason
    position.fees = money(closed.fees)
    position.realized_pnl = money(closed.realized_pnl)
    position.unrealized_pnl = Decimal(0)
    position.mark_price = price
    position.save()


def protective_levels(side: str, entry: Decimal, rules: Rules) -> tuple[Decimal, Decimal | None]:
    """(stop_loss, take_profit) from the default fractions, on the losing/winning side of entry.

    A short's take-profit at a fraction of 100 % or more would be a price of zero or less: it can
    never be reached, so the position simply has none.
    """
    if side == "LONG":
        return money(entry * (1 - rules.default_stop_loss)), money(
            entry * (1 + rules.default_take_profit)
        )
    take_profit = entry * (1 - rules.default_take_profit)
    return money(entry * (1 + rules.default_stop_loss)), (
        money(take_profit) if take_profit > 0 else None
    )


def new_row(session, order: Order, book: Book, price: Decimal, now, rules: Rules) -> Position:
    stop_loss, take_profit = protective_levels(book.side, book.entry_price, rules)
    return Position.create(
        session=session.id,
        symbol=order.symbol,
        exchange=order.exchange,
        side=book.side,
        status="OPEN",
        entry_price=money(book.entry_price),
        quantity=abs(book.quantity),
        entry_time=now,
        stop_loss=stop_loss,
        take_profit=take_profit,
        realized_pnl=money(book.realized_pnl),
        unrealized_pnl=money(book.unrealized(price)),
        fees=money(book.fees),
        mark_price=price,
        entry_reason=f"{order.type} {order.side} order {order.id} ({order.source})",
    )


def update_row(position: Position, book: Book, price: Decimal, rules: Rules) -> None:
    averaged = book.entry_price != position.entry_price
    position.quantity = abs(book.quantity)
    position.entry_price = money(book.entry_price)
    position.fees = money(book.fees)
    position.realized_pnl = money(book.realized_pnl)
    position.closed_quantity = book.closed_quantity
    position.exit_price = money(book.exit_price) if book.exit_price is not None else None
    position.unrealized_pnl = money(book.unrealized(price))
    position.mark_price = price
    if averaged:
        # Averaging in moves the entry, and the protective levels move with it.
        position.stop_loss, position.take_profit = protective_levels(
            position.side, position.entry_price, rules
        )
    position.save()


# -- protective exits, marks and loss limits ------------------------------------------------


def protective_exits(tick: MarketTick, rules: Rules) -> None:
    """Close positions whose stop-loss or take-profit the tick crossed, at market."""
    price = tick.price
    for position in list(Position.raw(PROTECTIVE_EXITS_SQL, tick.symbol, *[price] * 4)):
        stop = (position.side == "LONG" and price <= position.stop_loss) or (
            position.side == "SHORT" and price >= position.stop_loss
        )
        level = position.stop_loss if stop else position.take_profit
        reason = f"{'stop_loss' if stop else 'take_profit'} hit: price {price} crossed {level}"
        close_at_market(
            position, price, rules, source="stop_loss" if stop else "take_profit", reason=reason
        )


def close_at_market(
    position: Position, last: Decimal, rules: Rules, *, source: str, reason: str
) -> Order:
    """Close a whole position with a MARKET order filled at once."""
    side = "SELL" if position.side == "LONG" else "BUY"
    now = utcnow()
    order = Order.create(
        session=position.session_id,
        position=position.id,
        symbol=position.symbol,
        exchange=position.exchange,
        side=side,
        type="MARKET",
        status="NEW",
        quantity=position.quantity,
        source=source,
        placed_at=now,
        accepted_at=now,
    )
    fill(order, market_fill_price(side, last, rules), position.quantity, rules, reason=reason)
    return order


def record_equity(
    session: TradingSession, marks: dict[str, Decimal], now: datetime
) -> EquitySnapshot:
    equity, value, unrealized = equity_of(session, marks)
    realized = (
        Position.select(fn.COALESCE(fn.SUM(Position.realized_pnl), 0))
        .where(Position.session == session.id)
        .scalar()
    )
    return EquitySnapshot.create(
        session=session.id,
        sampled_at=now,
        equity=equity,
        cash=session.cash,
        position_value=value,
        realized_pnl=money(Decimal(realized)),
        unrealized_pnl=unrealized,
    )


def enforce_loss_limits(session: TradingSession, marks: dict[str, Decimal], rules: Rules) -> None:
    """Track peak and day-start equity; pause the session when a loss limit is breached."""
    equity, _, _ = equity_of(session, marks)
    today = utcnow().date()
    if session.day_start_date != today:
        session.day_start_date = today
        session.day_start_equity = equity
    session.peak_equity = max(session.peak_equity, equity)
    drawdown = (
        (session.peak_equity - equity) / session.peak_equity
        if session.peak_equity > 0
        else Decimal(0)
    )
    session.max_drawdown = money(max(session.max_drawdown, drawdown))
    daily_loss = (
        (session.day_start_equity - equity) / session.day_start_equity
        if session.day_start_equity > 0
        else Decimal(0)
    )
    breach = None
    if drawdown >= rules.max_drawdown:
        breach = (
            f"max_drawdown breached: {drawdown:.2%} below the peak (limit {rules.max_drawdown:.2%})"
        )
    elif daily_loss >= rules.max_daily_loss:
        limit = rules.max_daily_loss
        breach = f"max_daily_loss breached: {daily_loss:.2%} lost today (limit {limit:.2%})"
    if breach and session.status == "RUNNING":
        session.status = "PAUSED"
        session.status_reason = breach
        publish_error(
            "Risk limit breached",
            f"{breach}; session paused, new entries refused until resumed",
            "critical",
            session_id=str(session.id),
            symbol=session.symbol,
        )
    session.save()


def mark_to_market(rules: Rules, sample: bool) -> int:
    """Mark every open position, enforce loss limits; with ``sample``, record equity points."""
    marked = 0
    now = utcnow()
    sessions = TradingSession.select(TradingSession.id).where(
        TradingSession.status.in_(ACTIVE_SESSION_STATUSES)
    )
    for (session_id,) in sessions.tuples():
        with db.atomic():
            session = (
                TradingSession.select().where(TradingSession.id == session_id).for_update().first()
            )
            if session is None or session.status not in ACTIVE_SESSION_STATUSES:
                continue
            marks = marks_for(session)
            for position in (
                Position.select()
                .where(Position.session == session.id, Position.status == "OPEN")
                .for_update()
            ):
                mark = marks.get(position.symbol)
                if mark is None or mark == position.mark_price:
                    continue
                position.mark_price = mark
                position.unrealized_pnl = money(book_of(position).unrealized(mark))
                position.save()
                marked += 1
            enforce_loss_limits(session, marks, rules)
            if sample:
                record_equity(session, marks, now)
    return marked


def close_session_positions(session: TradingSession, rules: Rules | None = None) -> None:
    """Close everything a stopping session holds at the latest price (entry price if none)."""
    rules = rules or Rules.current()
    for position in (
        Position.select()
        .where(Position.session == session.id, Position.status == "OPEN")
        .for_update()
    ):
        last = latest_price(position.symbol)
        price = last.price if last is not None else position.entry_price
        close_at_market(position, price, rules, source="session_stop", reason="session stopped")
