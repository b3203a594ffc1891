"""Roles and the identity a request acts as."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """What a key may do; each role includes everything of the roles before it."""

    VIEWER = "viewer"
    TRADER = "trader"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return _RANKS[self] >= _RANKS[needed]


ROLE_ORDER = (Role.VIEWER, Role.TRADER, Role.ADMIN)
_RANKS = {role: rank for rank, role in enumerate(ROLE_ORDER)}


@dataclass(frozen=True)
class Identity:
    """Who is calling: a key (directly or through a token), or nobody when auth is disabled.

    ``rate_limit``/``write_limit``/``ws_connections`` are the key's own limits (None: the
    server's defaults apply).
    """

    key_id: str | None
    name: str | None
    role: Role
    rate_limit: str | None = None
    write_limit: str | None = None
    ws_connections: int | None = None
    via: str = "key"

    @property
    def anonymous(self) -> bool:
        return self.key_id is None


ANONYMOUS_ADMIN = Identity(key_id=None, name=None, role=Role.ADMIN, via="anonymous")
