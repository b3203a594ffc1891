"""Limit/offset paging shared by every list query."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import SQL

from app.db import db

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    def apply(self, query):
        """Apply this page to a Peewee select."""
        return query.limit(self.limit).offset(self.offset)


# Counting every match is exact up to this many rows; beyond it the planner's estimate is
# returned (flagged), so a list over millions of rows stays as cheap as its page.
EXACT_TOTAL_UP_TO = 10_000


@dataclass(frozen=True)
class Listing:
    """One page of a filtered list, and how many rows match the filters in all."""

    items: list
    total: int
    total_exact: bool

    @classmethod
    def of(cls, query, page: Page) -> Listing:
        """A page of a Peewee select (model instances)."""
        unordered = query.order_by()

        def estimate() -> int:
            sql, params = unordered.sql()
            plan = db.execute_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
            return int(plan[0]["Plan"]["Plan Rows"])

        return cls._counted(
            list(page.apply(query)),
            page,
            lambda bound: unordered.select(SQL("1")).limit(bound).count(),
            estimate,
        )

    @classmethod
    def of_compiled(cls, statement, values: dict, page: Page) -> Listing:
        """A page of a :class:`app.statements.CompiledSelect` (rows as dicts)."""
        return cls._counted(
            statement.rows(values, limit=page.limit, offset=page.offset),
            page,
            lambda bound: statement.count_up_to(values, bound),
            lambda: statement.estimate(values),
        )

    @classmethod
    def _counted(cls, items: list, page: Page, count_up_to, estimate) -> Listing:
        if page.offset == 0 and len(items) < page.limit:
            return cls(items, len(items), True)  # the whole list fits on this page
        matched = count_up_to(EXACT_TOTAL_UP_TO + 1)
        if matched <= EXACT_TOTAL_UP_TO:
            return cls(items, matched, True)
        return cls(items, max(estimate(), EXACT_TOTAL_UP_TO + 1), False)

    def body(self, name: str) -> dict:
        """The list response: the page under ``name``, its ``count``, and the ``total``."""
        return {
            name: self.items,
            "count": len(self.items),
            "total": self.total,
            "total_exact": self.total_exact,
        }
