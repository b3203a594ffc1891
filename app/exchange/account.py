"""LIVE trading on one exchange account, run by the exchange process.

Each pass of :meth:`LiveAccount.cycle`:

- reads the account (clock, balance, markets) into ``exchange_accounts``: the web refuses LIVE
  sessions while any of them cannot be read, and no order is sent then;
- writes the exchange's prices of what LIVE sessions trade into ``exchange_prices``: they are
  marked to them, whatever MARKET_FEED is;
- closes LIVE positions whose stop-loss or take-profit the exchange's price crossed, with a
  MARKET order of their own, and gives a session paused by a loss limit a pause's cancels;
- sends the NEW orders and the cancels (app/exchange/sending.py);
- reconciles the sent orders' fills (app/exchange/fills.py).

Network failures back off (doubling to a minute) with one ``error`` event per outage.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import ccxt
import orjson

from app.db import db
from app.events import publish_status
from app.exchange.connect import TRANSIENT, decimal, market_rules, plain
from app.exchange.feed import MARKETS_RELOAD_SECONDS, Backoff
from app.exchange.fills import FillReconciler
from app.exchange.sending import OrderSender
from app.models import Order, Position, TradingSession, utcnow
from app.trading.live import cancel_exposure_adding_orders, live_sessions_symbols
from app.trading.market_rules import market_rule, round_down_to_lot, store_markets
from app.trading.rules import protective_exit
from app.trading.valuation import prices_of
from app.vocabulary import OrderStatus, OrderType, PositionSide, SessionStatus, Side

log = logging.getLogger(__name__)

ACCOUNT_CHECK_SECONDS = 10.0
# A protective exit the exchange refused is placed again after this long, not every poll.
EXIT_RETRY_SECONDS = 60.0
EXIT_SOURCES = ("stop_loss", "take_profit")
UPSERT_ACCOUNT_SQL = """
INSERT INTO exchange_accounts (exchange, checked_at, clock_offset_ms, balances, markets, problem)
VALUES (%s, now(), %s, %s, %s, %s)
ON CONFLICT (exchange) DO UPDATE SET checked_at = now(),
    clock_offset_ms = EXCLUDED.clock_offset_ms, balances = EXCLUDED.balances,
    markets = EXCLUDED.markets, problem = EXCLUDED.problem
"""
UPSERT_PRICE_SQL = """
INSERT INTO exchange_prices (exchange, symbol, price, price_time, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (exchange, symbol) DO UPDATE SET price = EXCLUDED.price,
    price_time = EXCLUDED.price_time, updated_at = now()
"""


class LiveAccount:
    """One exchange account's orders, fills and health (the exchange process runs it)."""

    def __init__(self, client, poll_seconds: float):
        self.client = client
        self.exchange = client.id
        self.interval = poll_seconds
        self.backoff = Backoff(poll_seconds)
        self.next_check = 0.0
        self.next_poll = 0.0
        self.markets_loaded_at: float | None = None
        self.fills = FillReconciler(client)
        self.orders = OrderSender(client, self.fills)

    def cycle(self) -> int:
        """One pass (see the module's description); how many orders it moved on."""
        now = time.monotonic()
        if not self.backoff.due(now):
            return 0
        try:
            if now >= self.next_check:
                self.next_check = now + ACCOUNT_CHECK_SECONDS
                self.check_account()
            poll = now >= self.next_poll
            if poll:
                self.next_poll = now + self.interval
                self.poll_prices()
                self.protect_positions()
                self.enforce_pauses()
            orders = self.orders
            work = orders.confirm_unanswered() + orders.send_cancels() + orders.send_new_orders()
            if poll:
                work += self.fills.reconcile()
        except TRANSIENT as exc:
            self._outage(now, exc)
            return 0
        self.backoff.report_success("exchange_recovered", self.exchange)
        return work

    def _outage(self, now: float, exc: Exception) -> None:
        self.backoff.report_failure(now, f"Exchange account {self.exchange} is failing",
                                    f"{type(exc).__name__}: {self.client.redact(str(exc)[:300])}",
                                    severity="high", exchange=self.exchange)  # fmt: skip

    # -- the account -----------------------------------------------------------------------------
    def check_account(self) -> None:
        """Read the clock, the balance and (hourly) the markets into ``exchange_accounts``."""
        offset = balances = problem = None
        failure = None
        try:
            stale = self.markets_loaded_at is None or (
                time.monotonic() - self.markets_loaded_at > MARKETS_RELOAD_SECONDS
            )
            if stale:
                markets = self.client.load_markets(reload=True)
                rules = market_rules(self.exchange, markets, self.client.precisionMode)
                with db.connection_context():
                    store_markets(self.exchange, rules)
                self.markets_loaded_at = time.monotonic()
            sent = time.time() * 1000
            server = self.client.fetch_time()
            offset = round(server - (sent + time.time() * 1000) / 2)
            balance = self.client.fetch_balance()
            balances = {
                asset: {"free": plain(free), "total": plain(balance["total"][asset])}
                for asset, free in (balance.get("free") or {}).items()
                if free or (balance.get("total") or {}).get(asset)
            }
        except TRANSIENT as exc:
            problem, failure = f"{type(exc).__name__}: {self.client.redact(str(exc)[:200])}", exc
        except ccxt.BaseError as exc:  # keys refused, permissions missing: no retry helps
            problem = f"{type(exc).__name__}: {self.client.redact(str(exc)[:200])}"
        if problem is not None:
            self.next_check = time.monotonic() + self.interval  # read again soon, not in 10 s
        markets = len(self.client.markets or {}) if self.markets_loaded_at else 0
        stored = None if balances is None else orjson.dumps(balances).decode()
        with db.connection_context():
            db.execute_sql(UPSERT_ACCOUNT_SQL,
                           (self.exchange, offset, stored, markets, problem))  # fmt: skip
        if failure is not None:
            raise failure

    def poll_prices(self) -> None:
        """The exchange's last price of every symbol LIVE sessions trade, hold or work."""
        with db.connection_context():
            symbols = live_sessions_symbols(self.exchange)
        if not symbols:
            return
        if self.client.has.get("fetchTickers"):
            tickers = self.client.fetch_tickers(symbols)
        else:
            tickers = {symbol: self.client.fetch_ticker(symbol) for symbol in symbols}
        with db.connection_context(), db.atomic():
            for symbol, ticker in tickers.items():
                if ticker.get("last") is None:
                    continue
                stamp = ticker.get("timestamp")
                at = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else utcnow()
                db.execute_sql(UPSERT_PRICE_SQL,
                               (self.exchange, symbol, decimal(ticker["last"]), at))  # fmt: skip

    def protect_positions(self) -> int:
        """A LIVE position whose stop-loss or take-profit the exchange's price crossed gets a
        MARKET order closing it; how many were placed.

        Not while one is working, and at most one a minute per position, so an exit the
        exchange refuses is not re-sent every poll. A long position sells at most what the
        account holds free right now (an exchange may take a buyer's fee in the base asset),
        rounded down to the lot.
        """
        with db.connection_context():
            hits = self._crossed_positions()
        if not hits:
            return 0
        free = (self.client.fetch_balance().get("free") or {}) if any(
            position.side == PositionSide.LONG for position, _, _ in hits) else {}  # fmt: skip
        placed = 0
        with db.connection_context(), db.atomic():
            for position, hit, price in hits:
                if self._exit_pending(position):
                    continue
                side = Side.SELL if position.side == PositionSide.LONG else Side.BUY
                quantity = position.quantity
                if side == Side.SELL:
                    held = decimal(free.get(position.symbol.split("/")[0]))
                    rule = market_rule(self.exchange, position.symbol)
                    quantity = round_down_to_lot(rule, min(quantity, held))
                if quantity <= 0:
                    continue
                Order.create(session=position.session_id, position=position.id,
                             symbol=position.symbol, exchange=self.exchange, side=side,
                             type=OrderType.MARKET, quantity=quantity, source=hit)  # fmt: skip
                level = position.stop_loss if hit == "stop_loss" else position.take_profit
                publish_status("protective_exit", f"{hit} of a LIVE {position.symbol} position: "
                               f"{self.exchange} price {price} crossed {level}",
                               position_id=str(position.id), exchange=self.exchange)  # fmt: skip
                placed += 1
        return placed

    def _crossed_positions(self) -> list[tuple[Position, str, Decimal]]:
        """Open LIVE positions whose protective level the exchange's price crossed, with no
        exit pending: (position, which level, the price)."""
        positions = list(Position.select().where(Position.exchange == self.exchange,
                                                 Position.status == "OPEN"))  # fmt: skip
        prices = prices_of({p.symbol for p in positions}, self.exchange)
        hits = []
        for position in positions:
            latest = prices.get(position.symbol)
            if latest is None:
                continue
            hit = protective_exit(position.side, position.stop_loss, position.take_profit,
                                  latest.price)  # fmt: skip
            if hit is not None and not self._exit_pending(position):
                hits.append((position, hit, latest.price))
        return hits

    def _exit_pending(self, position: Position) -> bool:
        """A reducing order of the position's session is working, or an exit for it was placed
        within the last minute."""
        reducing = Side.SELL if position.side == PositionSide.LONG else Side.BUY
        working = (Order.session == position.session_id) & (Order.symbol == position.symbol) & (
            Order.side == reducing) & Order.settled_at.is_null() & Order.status.in_(
            (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED))  # fmt: skip
        recent = (Order.position == position.id) & Order.source.in_(EXIT_SOURCES) & (
            Order.placed_at > utcnow() - timedelta(seconds=EXIT_RETRY_SECONDS))  # fmt: skip
        return Order.select().where(working | recent).exists()

    def enforce_pauses(self) -> int:
        """A LIVE session paused by a loss limit (in a fill or a mark) gets the same cancels as a
        user's pause: its working orders that add exposure."""
        cancelled = 0
        with db.connection_context():
            paused = TradingSession.select().where(
                TradingSession.exchange == self.exchange,
                TradingSession.status == SessionStatus.PAUSED,
            )
            for session in paused:
                with db.atomic():
                    cancelled += cancel_exposure_adding_orders(session)
        return cancelled
