"""Position queries (positions are opened, marked and closed by the engine)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from peewee import Case

from app.errors import NotFound
from app.models import Position
from app.pagination import Listing, Page
from app.statements import CompiledSelect, text_uuids
from app.vocabulary import PositionStatus


@dataclass(frozen=True)
class PositionFilter:
    session_id: uuid.UUID | None = None
    symbol: str | None = None
    status: str = "open"  # open | closed | all


POSITION_LIST = CompiledSelect(
    lambda: Position.select(*text_uuids(*Position._meta.sorted_fields)).order_by(
        Position.entry_time.desc(), Position.id
    ),
    {
        "status": lambda p: Position.status == p,
        "session_id": lambda p: Position.session == p,
        "symbol": lambda p: Position.symbol == p,
    },
)


def list_positions(filters: PositionFilter, page: Page) -> Listing:
    """Positions (row dicts), most recently opened first."""
    values = {
        "status": None if filters.status == "all" else filters.status.upper(),
        "session_id": filters.session_id,
        "symbol": filters.symbol,
    }
    return Listing.of_compiled(POSITION_LIST, values, page)


def latest_position(symbol: str, session_id: uuid.UUID | None = None) -> Position:
    """The open position for ``symbol`` if there is one, else the most recently opened."""
    open_first = Case(None, [(Position.status == PositionStatus.OPEN, 0)], 1)
    query = (
        Position.select()
        .where(Position.symbol == symbol)
        .order_by(open_first, Position.entry_time.desc())
    )
    if session_id:
        query = query.where(Position.session == session_id)
    position = query.first()
    if position is None:
        raise NotFound("position not found", symbol=symbol)
    return position
