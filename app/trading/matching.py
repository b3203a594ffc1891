"""Order matching: ticks against working orders and protective exits, then the intake of new
orders (app/trading/intake.py).

Only the engine calls :func:`process_pending` (one engine per database). SQL only prefilters
candidates; the Python rules in :mod:`app.trading.rules` and :mod:`app.trading.execution`
decide every match, for ticks and arrivals alike. Each unit of work (a tick, a batch of
arrivals) runs on a :class:`Ledger` in a transaction that locks the orders, then the sessions,
then their positions, so a fill can never be applied twice and a cancel never races a fill.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from app.db import CONNECTION_ERRORS, db, is_retryable
from app.events import publish_error
from app.models import MarketTick, Order, utcnow
from app.trading.execution import execute, trigger
from app.trading.intake import INTAKE_BATCH, accept_new_orders
from app.trading.ledger import Ledger
from app.trading.liquidity import tick_budget
from app.trading.rules import (
    Rules,
    limit_crossed,
    market_fill_price,
    marketable_limit_price,
    protective_exit,
    stop_triggered,
)
from app.vocabulary import LIMIT_TYPES, TRIGGERED_TYPES, OrderType, Side

log = logging.getLogger(__name__)


def process_pending(
    rules: Rules | None = None, max_ticks: int = 500, intake_batch: int = INTAKE_BATCH
) -> int:
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
            process_ticks(batch, rules)
            handled += len(batch)
    except CONNECTION_ERRORS as error:
        if not is_retryable(error):
            raise
        log.warning("tick batch rolled back (%s); the next pass redoes it", error)
    except Exception:
        log.exception("tick batch failed; redoing it tick by tick")
        handled += process_ticks_one_by_one(rules, max_ticks)
    handled += accept_new_orders(rules, intake_batch)
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


# -- ticks ----------------------------------------------------------------------------------

# Built once: these run for every tick, and assembling them through the ORM cost more than
# executing them. They only prefilter: the Python rules decide. {price} is the tick's price:
# a %s parameter in the per-tick queries, a column in the batch prefilter. Only PAPER orders
# and positions: the exchange fills LIVE ones (app/exchange/account.py).
WORKING_ORDER_CROSSED = """
       status IN ('NEW', 'PARTIALLY_FILLED')
   AND accepted_at IS NOT NULL
   AND exchange = 'PAPER'
   AND (
        ((type = 'LIMIT'
          OR (type IN ('STOP_LOSS_LIMIT', 'TAKE_PROFIT_LIMIT') AND triggered_at IS NOT NULL))
         AND ((side = 'BUY' AND price >= {price}) OR (side = 'SELL' AND price <= {price})))
     OR type = 'MARKET'
     OR (type IN ('STOP_LOSS', 'TAKE_PROFIT') AND triggered_at IS NOT NULL)
     OR (triggered_at IS NULL AND type IN ('STOP_LOSS', 'STOP_LOSS_LIMIT')
         AND ((side = 'BUY' AND stop_price <= {price})
           OR (side = 'SELL' AND stop_price >= {price})))
     OR (triggered_at IS NULL AND type IN ('TAKE_PROFIT', 'TAKE_PROFIT_LIMIT')
         AND ((side = 'BUY' AND stop_price >= {price})
           OR (side = 'SELL' AND stop_price <= {price})))
   )
"""
# NULL levels never match.
PROTECTIVE_LEVEL_CROSSED = """
       status = 'OPEN'
   AND exchange = 'PAPER'
   AND ((side = 'LONG' AND (stop_loss >= {price} OR take_profit <= {price}))
     OR (side = 'SHORT' AND (stop_loss <= {price} OR take_profit >= {price})))
"""

# Parameters: symbol, then the tick price six times.
MATCHING_ORDERS_SQL = f"""
SELECT * FROM orders
 WHERE symbol = %s AND {WORKING_ORDER_CROSSED.format(price="%s")}
 ORDER BY placed_at, id
 FOR UPDATE
"""

# Parameters: symbol, then the tick price four times. No lock here: the ledger locks the
# sessions, then their positions, in the one order every path uses.
PROTECTIVE_EXITS_SQL = f"""
SELECT DISTINCT session_id FROM positions
 WHERE symbol = %s AND {PROTECTIVE_LEVEL_CROSSED.format(price="%s")}
"""

# For a batch of ticks (ids, symbols, prices as arrays): per symbol, the first tick that
# crosses a working order or a protective level. Before it, the symbol's ticks have nothing to
# match; from it on, every tick of the symbol is matched one by one (a fill may trigger orders
# or open positions that the next ticks cross).
FIRST_CROSSING_TICKS_SQL = f"""
SELECT t.symbol, MIN(t.id)
  FROM unnest(%s::bigint[], %s::text[], %s::numeric[]) AS t(id, symbol, price)
 WHERE EXISTS (SELECT 1 FROM orders
                WHERE orders.symbol = t.symbol AND {WORKING_ORDER_CROSSED.format(price="t.price")})
    OR EXISTS (SELECT 1 FROM positions
                WHERE positions.symbol = t.symbol
                  AND {PROTECTIVE_LEVEL_CROSSED.format(price="t.price")})
 GROUP BY t.symbol
"""

# The untouched budget of ticks nothing matched: (symbols, tick ids, budgets) as arrays.
UNTOUCHED_LIQUIDITY_SQL = """
UPDATE market_prices AS m SET liquidity_left = u.budget
  FROM unnest(%s::text[], %s::bigint[], %s::numeric[]) AS u(symbol, tick_id, budget)
 WHERE m.symbol = u.symbol AND m.tick_id = u.tick_id
"""


def process_ticks(batch: list[MarketTick], rules: Rules) -> None:
    """Match a batch of claimed ticks, in arrival order, with one prefilter for all of them.

    Most ticks cross nothing: those are settled together (their liquidity budget recorded in
    one statement) instead of running two queries each; the rest go through
    :func:`process_tick` in order, exactly as if every tick had.
    """
    if not batch:
        return
    cursor = db.execute_sql(
        FIRST_CROSSING_TICKS_SQL,
        ([tick.id for tick in batch], [tick.symbol for tick in batch],
         [tick.price for tick in batch]),
    )  # fmt: skip
    first_crossing = dict(cursor.fetchall())
    untouched = []
    for tick in batch:
        first = first_crossing.get(tick.symbol)
        if first is not None and tick.id >= first:
            process_tick(tick, rules)
        else:
            untouched.append(tick)
    budgets = [(tick, tick_budget(tick.volume, rules)) for tick in untouched]
    budgets = [(tick, budget) for tick, budget in budgets if budget is not None]
    if budgets:
        db.execute_sql(
            UNTOUCHED_LIQUIDITY_SQL,
            ([tick.symbol for tick, _ in budgets], [tick.id for tick, _ in budgets],
             [budget for _, budget in budgets]),
        )  # fmt: skip


def process_tick(tick: MarketTick, rules: Rules) -> None:
    """Match the symbol's working orders against one tick, then protective exits.

    The tick brings one liquidity budget (participation x volume). Resting orders take it in
    price-time priority; what they leave is recorded on the symbol's latest price, for orders
    that arrive after the tick.
    """
    orders = list(Order.raw(MATCHING_ORDERS_SQL, tick.symbol, *[tick.price] * 6))
    available = tick_budget(tick.volume, rules)
    if orders:
        ledger = Ledger(rules)
        ledger.lock_sessions(order.session_id for order in orders)
        available = match_tick(tick, orders, ledger, available)
        ledger.flush()
    if available is not None:
        db.execute_sql(
            "UPDATE market_prices SET liquidity_left = %s WHERE symbol = %s AND tick_id = %s",
            (max(available, Decimal(0)), tick.symbol, tick.id),
        )
    protective_exits(tick, rules)


def priority(order: Order, price: Decimal) -> tuple:
    """Price-time priority: orders at market first, then limits by how far they cross the
    tick (the best price first), then the oldest."""
    if order.type in LIMIT_TYPES and (
        order.type == OrderType.LIMIT or order.triggered_at is not None
    ):
        better = order.price - price if order.side == Side.BUY else price - order.price
        return (1, -better, order.placed_at, str(order.id))
    return (0, Decimal(0), order.placed_at, str(order.id))


def match_tick(
    tick: MarketTick, orders: list[Order], ledger: Ledger, available: Decimal | None
) -> Decimal | None:
    """Fill what the tick crosses; returns the liquidity left (None: no cap)."""
    rules = ledger.rules
    ledger.market_time = tick.tick_time
    for order in sorted(orders, key=lambda candidate: priority(candidate, tick.price)):
        if available is not None and available <= 0:
            break
        if order.type in TRIGGERED_TYPES and order.triggered_at is None:
            if not stop_triggered(order.type, order.side, order.stop_price, tick.price):
                continue
            filled = trigger(order, tick.price, available, ledger, liquidity_is_cap=True)
        elif order.type in LIMIT_TYPES:
            if not limit_crossed(order.side, order.price, tick.price):
                continue
            # The same price as on arrival: the market with slippage, never worse than the limit.
            price = marketable_limit_price(order.side, order.price, tick.price, rules)
            filled = execute(
                order, price, available, ledger, liquidity_is_cap=True, market=tick.price
            )
        else:
            price = market_fill_price(order.side, tick.price, rules)
            filled = execute(
                order, price, available, ledger, liquidity_is_cap=True, market=tick.price
            )
        if available is not None:
            available -= filled
    return available


def protective_exits(tick: MarketTick, rules: Rules) -> None:
    """Close positions whose stop-loss or take-profit the tick crossed, at market."""
    price = tick.price
    cursor = db.execute_sql(PROTECTIVE_EXITS_SQL, (tick.symbol, *[price] * 4))
    session_ids = [row[0] for row in cursor.fetchall()]
    if not session_ids:
        return
    ledger = Ledger(rules)
    ledger.lock_sessions(session_ids)
    ledger.market_time = tick.tick_time
    for book in list(ledger.sessions.values()):
        position = book.positions.get(tick.symbol)
        if position is None:
            continue
        hit = protective_exit(position.side, position.stop_loss, position.take_profit, price)
        if hit is None:
            continue
        level = position.stop_loss if hit == "stop_loss" else position.take_profit
        reason = f"{hit} hit: price {price} crossed {level}"
        ledger.close_at_market(position, price, source=hit, reason=reason)
    ledger.flush()
