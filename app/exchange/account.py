"""LIVE trading on one exchange account, run by the exchange process.

Each pass of :meth:`LiveAccount.cycle`:

- reads the account (clock, balance, markets) into ``exchange_accounts``: the web refuses LIVE
  sessions while any of them cannot be read, and no order is sent then;
- writes the exchange's prices of what LIVE sessions trade into ``exchange_prices``: they are
  marked to them, whatever MARKET_FEED is;
- closes LIVE positions whose stop-loss or take-profit the exchange's price crossed, with a
  MARKET order of their own;
- sends NEW orders, after the same risk checks the engine applies to PAPER fills, with the
  order's id as the client order id. ``sent_at`` is committed before the request: when the
  answer is lost, the order is looked up by that id before anything is sent again, so an order
  is never placed twice;
- sends the cancels recorded by the API, a pause or the kill switch;
- reconciles each sent order from ``fetch_order`` and ``fetch_my_trades``: every exchange
  trade is applied once (``exchange_fills``) through the engine's :class:`Ledger`, at the
  exchange's price, quantity, fee and time, so positions, PnL, trades and events work as on
  PAPER.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal

import ccxt
import orjson

from app.db import db
from app.events import publish_error, publish_status
from app.exchange.connect import TRANSIENT, market_rules
from app.exchange.feed import MARKETS_RELOAD_SECONDS, Backoff
from app.models import Order, Position, TradingSession, utcnow
from app.process_metrics import count_rejections
from app.runtime_config import trading_rules
from app.trading.entry_limits import check_entry
from app.trading.ledger import Ledger
from app.trading.live import account_health, cancel_exposure_adding_orders, live_sessions_symbols
from app.trading.market_rules import check_order, market_rule, store_markets
from app.trading.portfolio import apply_fill, exposure_increase
from app.trading.rules import Rejected, Rules, money, protective_exit
from app.trading.valuation import book_of
from app.vocabulary import OrderStatus, OrderType, PositionSide, SessionStatus, Side

log = logging.getLogger(__name__)

ACCOUNT_CHECK_SECONDS = 10.0
# An order request older than this can no longer be taken by the exchange (Binance refuses a
# signed request outside its 5 s receive window): an unanswered order not found by its client
# order id after that was never placed.
LOST_ANSWER_SECONDS = 10.0
SEND_BATCH = 20
# Definite refusals: the exchange did not take the order. Anything else may have placed it.
REFUSED = (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.BadRequest,
           ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended,
           ccxt.NotSupported)  # fmt: skip
EXCHANGE_STATUS = {"canceled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED,
                   "rejected": OrderStatus.REJECTED, "closed": OrderStatus.FILLED}  # fmt: skip

TO_SEND_SQL = """
SELECT id FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND status = 'NEW' AND sent_at IS NULL
 ORDER BY placed_at, id LIMIT %s
"""
UNCONFIRMED_SQL = """
SELECT id FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND sent_at IS NOT NULL
   AND exchange_order_id IS NULL
 ORDER BY placed_at, id
"""
TO_CANCEL_SQL = """
SELECT id FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND status = 'CANCELED'
   AND (exchange_order_id IS NOT NULL OR sent_at IS NULL)
 ORDER BY placed_at, id
"""
WORKING_SQL = """
SELECT id FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND exchange_order_id IS NOT NULL
 ORDER BY placed_at, id
"""
FILL_ONCE_SQL = """
INSERT INTO exchange_fills (exchange, trade_id, order_id) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING RETURNING trade_id
"""
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


def decimal(value) -> Decimal:
    """A ccxt number (a float, a string or None) as the exact Decimal it prints as."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value or 0))


def plain(value) -> str:
    """A ccxt number as plain digits: 100000.0 → "100000"."""
    return format(decimal(value).normalize(), "f")


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
            work = self.confirm_unanswered() + self.send_cancels() + self.send_new_orders()
            if poll:
                work += self.reconcile()
        except TRANSIENT as exc:
            self._outage(now, exc)
            return 0
        ended = self.backoff.succeeded()
        if ended is not None:
            with db.connection_context():
                publish_status("exchange_recovered", f"{self.exchange} answers again",
                               exchange=self.exchange, outage_seconds=round(ended, 1))  # fmt: skip
        return work

    def _outage(self, now: float, exc: Exception) -> None:
        first = self.backoff.failed(now)
        log.warning("%s account failed (%s), next try in %.0f s", self.exchange,
                    self.client.redact(str(exc)[:300]), self.backoff.wait)  # fmt: skip
        if first:
            with db.connection_context():
                publish_error(
                    f"Exchange account {self.exchange} is failing",
                    f"{type(exc).__name__}: {self.client.redact(str(exc)[:300])}; "
                    "retrying with back-off; unanswered orders are looked up before any resend",
                    severity="high",
                    exchange=self.exchange,
                )

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

    # -- orders ----------------------------------------------------------------------------------
    def send_new_orders(self) -> int:
        """Check and send the NEW orders of LIVE sessions, oldest first."""
        with db.connection_context():
            ids = [row[0] for row in db.execute_sql(TO_SEND_SQL, (self.exchange, SEND_BATCH))]
        sent = 0
        for order_id in ids:
            with db.connection_context():
                order = self._claim_for_sending(order_id)
            if order is not None:
                self._send(order)
                sent += 1
        return sent

    def _claim_for_sending(self, order_id) -> Order | None:
        """In one transaction: the risk checks (a refused order is REJECTED with the reason),
        then ``sent_at``, committed before any request goes out."""
        with db.atomic():
            order = Order.select().where(Order.id == order_id).for_update().first()
            if order is None or order.status != OrderStatus.NEW or order.sent_at is not None:
                return None
            config = trading_rules()
            rules = Rules.from_config(config)
            ledger = Ledger(rules, exchange=self.exchange)
            ledger.lock_sessions([order.session_id])
            ledger.load_prices([order.symbol])
            try:
                self._check(order, ledger, config)
            except Rejected as refusal:
                self._reject(order, str(refusal), refusal.reason)
                return None
            order.sent_at = order.accepted_at = utcnow()
            order.save()
            return order

    def _check(self, order: Order, ledger: Ledger, config: dict) -> None:
        """Raise :class:`Rejected` for an order that must not reach the exchange."""
        if config["trading"]["mode"] != "live":
            raise Rejected("not sent: LIVE trading is switched off (trading_mode is paper)",
                           reason="live_disabled")  # fmt: skip
        health = account_health(self.exchange)
        trouble = "the account has not been read" if health is None else health.trouble()
        if trouble is not None:
            raise Rejected(f"not sent: {trouble}", reason="exchange_unavailable")
        age = (utcnow() - order.placed_at).total_seconds()
        if age > ledger.rules.max_price_age_seconds:
            raise Rejected(f"not sent: the order waited {age:.0f}s for the exchange, longer than "
                           f"max_price_age_seconds", reason="stale_order")  # fmt: skip
        latest = ledger.price(order.symbol)
        price = order.price if order.type == OrderType.LIMIT else (latest and latest.price)
        if price is None:
            raise Rejected(f"not sent: no {self.exchange} price of {order.symbol} yet",
                           reason="no_price")  # fmt: skip
        try:
            check_order(market_rule(self.exchange, order.symbol), order.quantity,
                        {"price": order.price}, latest and latest.price)  # fmt: skip
        except Exception as broken:  # the API checked it; the markets may have changed since
            raise Rejected(f"not sent: {getattr(broken, 'details', broken)}",
                           reason="market_rule") from None  # fmt: skip
        book = ledger.session(order.session_id)
        position = book.positions.get(order.symbol)
        before = book_of(position)
        if exposure_increase(before, order.side, order.quantity) <= 0:
            return  # reducing is always allowed
        fee = money(price * order.quantity * ledger.rules.commission_rate)
        effect = apply_fill(before, order.side, order.quantity, price, fee)
        marks = {**ledger.marks(book), order.symbol: latest.price if latest else price}
        equity, _, _ = ledger.equity(book, marks)
        others = sum(1 for symbol in book.positions if symbol != order.symbol)
        check_entry(book.row, order.side, effect, price, equity, others, ledger.rules)

    def _reject(self, order: Order, reason: str, code: str) -> None:
        now = utcnow()
        order.status = OrderStatus.REJECTED
        order.error_message = reason
        order.accepted_at = order.accepted_at or now
        order.settled_at = now
        order.save()
        count_rejections([code])
        log.info("LIVE order %s rejected: %s", order.id, reason)

    def _send(self, order: Order) -> None:
        params = {"clientOrderId": str(order.id)}
        if order.type == OrderType.LIMIT:
            params["timeInForce"] = order.time_in_force
        price = float(order.price) if order.price is not None else None
        try:
            placed = self.client.create_order(order.symbol, order.type.lower(), order.side.lower(),
                                              float(order.quantity), price, params)  # fmt: skip
        except REFUSED as exc:
            with db.connection_context(), db.atomic():
                fresh = Order.select().where(Order.id == order.id).for_update().first()
                reason = f"refused by {self.exchange}: {self.client.redact(str(exc)[:300])}"
                self._reject(fresh, reason, "exchange_refused")
            return
        except Exception:
            # The answer is lost or unclear: the order may be on the exchange. It stays sent
            # without an exchange id, and confirm_unanswered looks it up by client order id.
            log.warning("LIVE order %s: no clear answer from %s; looking it up before any "
                        "resend", order.id, self.exchange)  # fmt: skip
            raise
        self._record_exchange_id(order.id, placed["id"])

    def _record_exchange_id(self, order_id, exchange_order_id: str) -> None:
        with db.connection_context(), db.atomic():
            Order.update(exchange_order_id=str(exchange_order_id), updated_at=utcnow()).where(
                Order.id == order_id
            ).execute()

    def confirm_unanswered(self) -> int:
        """Orders sent without an answer: look each up by its client order id. Found: it is on
        the exchange. Not found once the request can no longer arrive: it was never placed, so
        it is sent again if still wanted (the risk checks run again first)."""
        with db.connection_context():
            ids = [row[0] for row in db.execute_sql(UNCONFIRMED_SQL, (self.exchange,))]
        for order_id in ids:
            with db.connection_context():
                order = Order.get_by_id(order_id)
            try:
                found = self.client.fetch_order(None, order.symbol,
                                                {"clientOrderId": str(order.id)})  # fmt: skip
            except ccxt.OrderNotFound:
                if (utcnow() - order.sent_at).total_seconds() < LOST_ANSWER_SECONDS:
                    continue
                with db.connection_context(), db.atomic():
                    fresh = Order.select().where(Order.id == order_id).for_update().first()
                    fresh.sent_at = None
                    if fresh.status == OrderStatus.CANCELED:
                        fresh.settled_at = utcnow()  # cancelled, and never placed
                    fresh.save()
                log.info("LIVE order %s was never placed on %s", order_id, self.exchange)
                continue
            self._record_exchange_id(order_id, found["id"])
        return len(ids)

    def send_cancels(self) -> int:
        """Cancel on the exchange what was cancelled here; apply what filled before that."""
        with db.connection_context():
            ids = [row[0] for row in db.execute_sql(TO_CANCEL_SQL, (self.exchange,))]
        for order_id in ids:
            with db.connection_context():
                order = Order.get_by_id(order_id)
            if order.exchange_order_id is None:  # never sent: nothing on the exchange
                with db.connection_context():
                    Order.update(settled_at=utcnow()).where(Order.id == order_id).execute()
                continue
            # Not found: already filled, cancelled or expired there; reconciling tells which.
            with contextlib.suppress(ccxt.OrderNotFound):
                self.client.cancel_order(order.exchange_order_id, order.symbol)
            self.reconcile_order(order)
        return len(ids)

    # -- fills -----------------------------------------------------------------------------------
    def reconcile(self) -> int:
        """Bring every sent, unsettled order up to date with the exchange."""
        with db.connection_context():
            ids = [row[0] for row in db.execute_sql(WORKING_SQL, (self.exchange,))]
        for order_id in ids:
            with db.connection_context():
                order = Order.get_by_id(order_id)
            self.reconcile_order(order)
        return len(ids)

    def reconcile_order(self, order: Order) -> None:
        """Apply the order's new exchange trades, then settle it once the exchange is done."""
        remote = self.client.fetch_order(order.exchange_order_id, order.symbol)
        filled = decimal(remote.get("filled"))
        if filled > order.executed_quantity:
            trades = self.client.fetch_my_trades(order.symbol, None, None,
                                                 {"orderId": order.exchange_order_id})  # fmt: skip
            mine = [t for t in trades if str(t.get("order")) == str(order.exchange_order_id)]
            self.apply_trades(order.id, mine)
        final = EXCHANGE_STATUS.get(remote.get("status"))
        if final is None:
            return
        with db.connection_context(), db.atomic():
            fresh = Order.select().where(Order.id == order.id).for_update().first()
            if fresh.executed_quantity < filled:
                return  # trades not listed yet: settle at a later pass
            now = utcnow()
            fresh.status = final
            if final == OrderStatus.FILLED:
                fresh.filled_at = fresh.filled_at or now  # the exchange closed it: no more fills
            elif final == OrderStatus.CANCELED:
                fresh.canceled_at = fresh.canceled_at or now
                fresh.error_message = fresh.error_message or f"cancelled on {self.exchange}"
            else:
                fresh.expired_at = now if final == OrderStatus.EXPIRED else fresh.expired_at
                fresh.error_message = f"{remote.get('status')} on {self.exchange}"
            fresh.settled_at = now
            fresh.save()

    def apply_trades(self, order_id, trades: list[dict]) -> int:
        """Apply each exchange trade once, through the ledger, at the exchange's price, fee and
        time; how many were new."""
        applied = 0
        with db.connection_context(), db.atomic():
            order = Order.select().where(Order.id == order_id).for_update().first()
            ledger = Ledger(Rules.current(), exchange=self.exchange)
            ledger.lock_sessions([order.session_id])
            ledger.load_prices([order.symbol])
            cancelled = order.canceled_at is not None
            for trade in sorted(trades, key=lambda t: (t.get("timestamp") or 0, str(t["id"]))):
                fresh = db.execute_sql(FILL_ONCE_SQL, (self.exchange, str(trade["id"]), order.id))
                if fresh.fetchone() is None:
                    continue  # applied before
                stamp = trade.get("timestamp")
                ledger.market_time = datetime.fromtimestamp(stamp / 1000, UTC) if stamp else None
                price, quantity = decimal(trade["price"]), decimal(trade["amount"])
                ledger.fill(order, price, quantity, fee=self._quote_fee(trade, order.symbol, price),
                            executed_at=ledger.market_time)  # fmt: skip
                applied += 1
            if cancelled and order.status != OrderStatus.FILLED:
                order.status = OrderStatus.CANCELED  # a fill before the cancel arrived
            ledger.flush()
        log.info("LIVE order %s: %s new fills from %s", order_id, applied, self.exchange)
        return applied

    def _quote_fee(self, trade: dict, symbol: str, price: Decimal) -> Decimal:
        """The trade's fee in the symbol's quote currency (0 when the exchange gives none)."""
        fee = trade.get("fee") or {}
        cost, currency = decimal(fee.get("cost")), fee.get("currency")
        base, quote = symbol.split("/")
        if not cost or currency in (None, quote):
            return cost
        if currency == base:
            return cost * price
        rate = self.client.fetch_ticker(f"{currency}/{quote}").get("last")
        return cost * decimal(rate)

    # -- safety ----------------------------------------------------------------------------------
    def protect_positions(self) -> int:
        """A LIVE position whose stop-loss or take-profit the exchange's price crossed gets a
        MARKET order closing it (unless one is already working); how many were placed."""
        placed = 0
        with db.connection_context(), db.atomic():
            positions = list(Position.select().where(Position.exchange == self.exchange,
                                                     Position.status == "OPEN"))  # fmt: skip
            ledger = Ledger(Rules.current(), exchange=self.exchange)
            ledger.load_prices({p.symbol for p in positions})
            for position in positions:
                latest = ledger.price(position.symbol)
                if latest is None:
                    continue
                hit = protective_exit(position.side, position.stop_loss, position.take_profit,
                                      latest.price)  # fmt: skip
                if hit is None or self._exit_working(position):
                    continue
                side = Side.SELL if position.side == PositionSide.LONG else Side.BUY
                Order.create(session=position.session_id, position=position.id,
                             symbol=position.symbol, exchange=self.exchange, side=side,
                             type=OrderType.MARKET, quantity=position.quantity,
                             source=hit)  # fmt: skip
                level = position.stop_loss if hit == "stop_loss" else position.take_profit
                publish_status("protective_exit", f"{hit} of a LIVE {position.symbol} position: "
                               f"{self.exchange} price {latest.price} crossed {level}",
                               position_id=str(position.id), exchange=self.exchange)  # fmt: skip
                placed += 1
        return placed

    def _exit_working(self, position: Position) -> bool:
        reducing = Side.SELL if position.side == PositionSide.LONG else Side.BUY
        return (
            Order.select()
            .where(Order.session == position.session_id, Order.symbol == position.symbol,
                   Order.side == reducing, Order.settled_at.is_null(),
                   Order.status.in_((OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)))
            .exists()
        )  # fmt: skip

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
