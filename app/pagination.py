"""Limit/offset paging shared by every list query."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def apply(self, query):
        """Apply this page to a Peewee select."""
        return query.limit(self.limit).offset(self.offset)
