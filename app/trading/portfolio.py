"""Netted-position arithmetic for one fill: pure functions on Decimals, no database.

Conventions (documented in the README): a position is a signed quantity (LONG > 0, SHORT < 0)
with a volume-weighted entry price. Fees are paid per fill and count in realized PnL at once,
so an open position's realized PnL is minus the fees paid so far. A fill against the position
first closes (realizing (price - entry) x closed quantity x direction), and whatever is left
opens the opposite side (a flip). A fill's fee is split between its closing and opening parts
by quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class Book:
    """One symbol's open position in a session, as numbers."""

    quantity: Decimal = ZERO  # signed: LONG > 0, SHORT < 0
    entry_price: Decimal = ZERO
    fees: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    closed_quantity: Decimal = ZERO
    exit_price: Decimal | None = None

    @property
    def side(self) -> str | None:
        if self.quantity > 0:
            return "LONG"
        if self.quantity < 0:
            return "SHORT"
        return None

    def unrealized(self, mark: Decimal) -> Decimal:
        return (mark - self.entry_price) * self.quantity


@dataclass(frozen=True)
class FillEffect:
    """What one fill does: the position it leaves, and one it closed (on a close or flip)."""

    closed: Book | None  # the position as it stood when its last quantity was closed
    open: Book  # the position afterwards (quantity 0 when flat)
    cash_delta: Decimal
    opened_new: bool  # a new position row starts (from flat, or by a flip)


def signed(side: str, quantity: Decimal) -> Decimal:
    return quantity if side == "BUY" else -quantity


def apply_fill(
    book: Book, side: str, quantity: Decimal, price: Decimal, fee: Decimal
) -> FillEffect:
    """Apply a fill of ``quantity`` at ``price`` paying ``fee`` to ``book``."""
    delta = signed(side, quantity)
    cash_delta = -delta * price - fee
    if book.quantity == 0 or (book.quantity > 0) == (delta > 0):
        total = abs(book.quantity) + quantity
        entry = (abs(book.quantity) * book.entry_price + quantity * price) / total
        opened = replace(
            book,
            quantity=book.quantity + delta,
            entry_price=entry,
            fees=book.fees + fee,
            realized_pnl=book.realized_pnl - fee,
        )
        return FillEffect(None, opened, cash_delta, opened_new=book.quantity == 0)

    direction = Decimal(1) if book.quantity > 0 else Decimal(-1)
    closing = min(quantity, abs(book.quantity))
    closing_fee = fee * closing / quantity
    opening_fee = fee - closing_fee
    exit_price = (
        price
        if book.exit_price is None
        else (book.exit_price * book.closed_quantity + price * closing)
        / (book.closed_quantity + closing)
    )
    reduced = replace(
        book,
        quantity=book.quantity - direction * closing,
        fees=book.fees + closing_fee,
        realized_pnl=book.realized_pnl
        + (price - book.entry_price) * closing * direction
        - closing_fee,
        closed_quantity=book.closed_quantity + closing,
        exit_price=exit_price,
    )
    if reduced.quantity != 0:
        return FillEffect(None, reduced, cash_delta, opened_new=False)
    remainder = quantity - closing
    if remainder == 0:
        return FillEffect(reduced, Book(), cash_delta, opened_new=False)
    flipped = Book(
        quantity=signed(side, remainder),
        entry_price=price,
        fees=opening_fee,
        realized_pnl=-opening_fee,
    )
    return FillEffect(reduced, flipped, cash_delta, opened_new=True)


def exposure_increase(book: Book, side: str, quantity: Decimal) -> Decimal:
    """How much of a fill adds exposure (0 for a pure reduction, the excess for a flip)."""
    delta = signed(side, quantity)
    if book.quantity == 0 or (book.quantity > 0) == (delta > 0):
        return quantity
    return max(ZERO, quantity - abs(book.quantity))
