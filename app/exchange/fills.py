"""LIVE fills: each sent order brought up to date with the exchange (run by the exchange process).

``fetch_order`` tells how much filled and whether the exchange is done with the order; when
more filled, ``fetch_my_trades`` lists the trades, and each is applied once (``exchange_fills``)
through the engine's :class:`Ledger` at the exchange's price, quantity, fee and time, so
positions, PnL, trades and events work as on PAPER. An order is settled once the exchange's
final state and every trade of it are applied.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

from app.db import db
from app.exchange.connect import decimal
from app.models import Order, utcnow
from app.trading.ledger import Ledger
from app.trading.rules import Rules
from app.vocabulary import OrderStatus

log = logging.getLogger(__name__)

EXCHANGE_STATUS = {"canceled": OrderStatus.CANCELED, "expired": OrderStatus.EXPIRED,
                   "rejected": OrderStatus.REJECTED, "closed": OrderStatus.FILLED}  # fmt: skip
WORKING_SQL = """
SELECT * FROM orders
 WHERE exchange = %s AND settled_at IS NULL AND exchange_order_id IS NOT NULL
 ORDER BY placed_at, id
"""
FILL_ONCE_SQL = """
INSERT INTO exchange_fills (exchange, trade_id, order_id) VALUES (%s, %s, %s)
ON CONFLICT DO NOTHING RETURNING trade_id
"""


class FillReconciler:
    """Applies one exchange account's fills to its LIVE orders."""

    def __init__(self, client):
        self.client = client
        self.exchange = client.id

    def reconcile(self) -> int:
        """Bring every sent, unsettled order up to date with the exchange."""
        with db.connection_context():
            orders = list(Order.raw(WORKING_SQL, self.exchange))
        for order in orders:
            self.reconcile_order(order)
        return len(orders)

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
