"""The liquidity a tick offers: a share (``liquidity_participation``) of its volume, which the
orders matched on it and the orders arriving after it draw from together."""

from __future__ import annotations

from decimal import Decimal

from app.models import MarketPrice
from app.trading.rules import Rules, money


def tick_budget(volume: Decimal | None, rules: Rules) -> Decimal | None:
    """What all orders together may take of one tick; None when there is no cap."""
    if rules.participation > 0 and volume is not None:
        return money(volume * rules.participation)
    return None


class LiquidityBook:
    """What is left of each symbol's latest tick for arriving orders, over the latest price rows
    of one transaction (``prices``, shared with the ledger), written back by :meth:`flush`."""

    def __init__(self, rules: Rules, prices: dict[str, MarketPrice]):
        self.rules = rules
        self.prices = prices
        self.changed: dict[str, MarketPrice] = {}

    def left(self, symbol: str) -> Decimal | None:
        """What orders may still take of the symbol's latest tick; None when nothing caps it.

        A tick the engine has not matched yet offers its whole budget.
        """
        if self.rules.participation <= 0:
            return None
        latest = self.prices.get(symbol)
        if latest is None or latest.volume is None:
            return None
        if latest.liquidity_left is not None:
            return latest.liquidity_left
        return tick_budget(latest.volume, self.rules)

    def take(self, symbol: str, quantity: Decimal) -> None:
        left = self.left(symbol)
        if left is None:
            return
        latest = self.prices[symbol]
        latest.liquidity_left = max(Decimal(0), left - quantity)
        self.changed[symbol] = latest

    def flush(self) -> None:
        for latest in self.changed.values():
            # Only while it is still the latest tick: a newer one brings a fresh budget.
            MarketPrice.update(liquidity_left=latest.liquidity_left).where(
                MarketPrice.symbol == latest.symbol, MarketPrice.tick_id == latest.tick_id
            ).execute()
        self.changed = {}
