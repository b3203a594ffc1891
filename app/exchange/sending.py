"""LIVE orders to the exchange: checked, sent once, cancelled (run by the exchange process).

A NEW order of a LIVE session gets the risk checks the engine applies to PAPER fills; a refusal
is REJECTED with the reason. While the account cannot be read an order waits, and one older
than ``max_price_age_seconds`` is rejected instead of sent late. ``sent_at`` is committed
before the request, with the order's id as the client order id: when the answer is lost, the
order is looked up by that id before anything is sent again, so an order is never placed twice.
Cancels recorded by the API, a pause or the kill switch are sent; what filled before them is
still applied.
"""

from __future__ import annotations

import contextlib
import logging

import ccxt

from app.db import db
from app.errors import InvalidInput, Unavailable
from app.exchange.fills import FillReconciler
from app.models import Order, utcnow
from app.process_metrics import LIVE_ORDERS, count_rejections
from app.runtime_config import trading_rules
from app.trading.entry_limits import check_adding_fill
from app.trading.ledger import Ledger
from app.trading.live import account_health
from app.trading.market_rules import check_order, market_rule
from app.trading.portfolio import apply_fill
from app.trading.rules import Rejected, Rules, money
from app.trading.valuation import book_of
from app.vocabulary import OrderStatus, OrderType

log = logging.getLogger(__name__)

# An order request older than this can no longer be taken by the exchange (Binance refuses a
# signed request outside its 5 s receive window): an unanswered order not found by its client
# order id after that was never placed.
LOST_ANSWER_SECONDS = 10.0
SEND_BATCH = 20
# Definite refusals: the exchange did not take the order. Anything else may have placed it.
REFUSED = (ccxt.InvalidOrder, ccxt.InsufficientFunds, ccxt.BadSymbol, ccxt.BadRequest,
           ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended,
           ccxt.NotSupported)  # fmt: skip
TO_SEND_SQL = """
SELECT id FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND status = 'NEW' AND sent_at IS NULL
 ORDER BY placed_at, id LIMIT %s
"""
UNCONFIRMED_SQL = """
SELECT * FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND sent_at IS NOT NULL
   AND exchange_order_id IS NULL
 ORDER BY placed_at, id
"""
TO_CANCEL_SQL = """
SELECT * FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND status = 'CANCELED'
   AND (exchange_order_id IS NOT NULL OR sent_at IS NULL)
 ORDER BY placed_at, id
"""


class Waiting(Exception):
    """The account cannot be used now: the order stays NEW (until it is too old to send)."""


class OrderSender:
    """Sends one exchange account's LIVE orders and cancels."""

    def __init__(self, client, fills: FillReconciler):
        self.client = client
        self.exchange = client.id
        self.fills = fills

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
            except Waiting as trouble:
                log.info("LIVE order %s waits: %s", order.id, trouble)
                return None
            except Rejected as refusal:
                self._reject(order, str(refusal), refusal.reason)
                LIVE_ORDERS.labels(self.exchange, "rejected").inc()
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
        age = (utcnow() - order.placed_at).total_seconds()
        if age > ledger.rules.max_price_age_seconds:
            raise Rejected(f"not sent: the order waited {age:.0f}s for the exchange, longer than "
                           f"max_price_age_seconds ({trouble or 'the exchange was unreachable'})",
                           reason="stale_order")  # fmt: skip
        if trouble is not None:
            raise Waiting(trouble)
        latest = ledger.price(order.symbol)
        price = order.price if order.type == OrderType.LIMIT else (latest and latest.price)
        if price is None:
            raise Rejected(f"not sent: no {self.exchange} price of {order.symbol} yet",
                           reason="no_price")  # fmt: skip
        try:  # the API checked them; the exchange's markets may have changed since
            check_order(market_rule(self.exchange, order.symbol), order.quantity,
                        {"price": order.price}, latest and latest.price)  # fmt: skip
        except InvalidInput as broken:
            raise Rejected(f"not sent: {broken.details}", reason="market_rule") from None
        except Unavailable as unloaded:
            raise Waiting(unloaded.message) from None
        book = ledger.session(order.session_id)
        before = book_of(book.positions.get(order.symbol))
        fee = money(price * order.quantity * ledger.rules.commission_rate)
        effect = apply_fill(before, order.side, order.quantity, price, fee)
        marks = {**ledger.marks(book), order.symbol: latest.price if latest else price}
        check_adding_fill(book, order, before, effect, order.quantity, price,
                          lambda: ledger.equity(book, marks)[0], ledger.rules)  # fmt: skip

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
            LIVE_ORDERS.labels(self.exchange, "refused").inc()
            return
        except Exception:
            # The answer is lost or unclear: the order may be on the exchange. It stays sent
            # without an exchange id, and confirm_unanswered looks it up by client order id.
            log.warning("LIVE order %s: no clear answer from %s; looking it up before any "
                        "resend", order.id, self.exchange)  # fmt: skip
            LIVE_ORDERS.labels(self.exchange, "unanswered").inc()
            raise
        LIVE_ORDERS.labels(self.exchange, "sent").inc()
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
            orders = list(Order.raw(UNCONFIRMED_SQL, self.exchange))
        for order in orders:
            try:
                found = self.client.fetch_order(None, order.symbol,
                                                {"clientOrderId": str(order.id)})  # fmt: skip
            except ccxt.OrderNotFound:
                if (utcnow() - order.sent_at).total_seconds() < LOST_ANSWER_SECONDS:
                    continue
                with db.connection_context(), db.atomic():
                    fresh = Order.select().where(Order.id == order.id).for_update().first()
                    fresh.sent_at = None
                    if fresh.status == OrderStatus.CANCELED:
                        fresh.settled_at = utcnow()  # cancelled, and never placed
                    fresh.save()
                log.info("LIVE order %s was never placed on %s", order.id, self.exchange)
                continue
            self._record_exchange_id(order.id, found["id"])
        return len(orders)

    def send_cancels(self) -> int:
        """Cancel on the exchange what was cancelled here; apply what filled before that."""
        with db.connection_context():
            orders = list(Order.raw(TO_CANCEL_SQL, self.exchange))
        for order in orders:
            if order.exchange_order_id is None:  # never sent: nothing on the exchange
                with db.connection_context():
                    Order.update(settled_at=utcnow()).where(Order.id == order.id).execute()
                continue
            # Not found: already filled, cancelled or expired there; reconciling tells which.
            with contextlib.suppress(ccxt.OrderNotFound):
                self.client.cancel_order(order.exchange_order_id, order.symbol)
                LIVE_ORDERS.labels(self.exchange, "cancelled").inc()
            self.fills.reconcile_order(order)
        return len(orders)
