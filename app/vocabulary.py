"""Every status and kind the system stores, in one place (StrEnums compare equal to the strings
in the database and on the wire)."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    MARKET = "MARKET"
    LIMIT = "LIMIT"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class SessionStatus(StrEnum):
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"


class PositionSide(StrEnum):
    LONG = "LONG"
    SHORT = "SHORT"


class PositionStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class Outcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    PENDING = "PENDING"


# The exchange of PAPER sessions, orders and positions: the engine's own matcher. LIVE ones
# carry the ccxt id of the exchange they trade on.
PAPER_EXCHANGE = "PAPER"
ACTIVE_SESSION_STATUSES = (SessionStatus.RUNNING, SessionStatus.PAUSED)
OPEN_ORDER_STATUSES = (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED)
LIMIT_TYPES = (OrderType.LIMIT, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT)
STOP_TYPES = (OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT)
PROFIT_TYPES = (OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT)
TRIGGERED_TYPES = STOP_TYPES + PROFIT_TYPES
MARKET_TRIGGERED_TYPES = (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)
