"""Decisions made in a similar market context: pgvector cosine distance over the embeddings.

The HNSW index answers ``ORDER BY embedding <=> reference LIMIT k`` (any other sort key keeps
the planner off it, so ties are broken here, after the scan). With a ``symbol`` or
``agent_name`` filter the index scan keeps walking the graph (``iterative_scan``) until the
page is full, but only up to ``hnsw.max_scan_tuples``: a filter that matches few decisions is
answered by an exact scan of just those rows, and a short index answer is completed the same
way, so a filtered query never returns fewer than ``limit`` rows when enough exist.
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from dataclasses import dataclass

from app.db import HNSW_EF_SEARCH, db
from app.errors import NotFound
from app.statements import dicts

# A filter matching at most this many decisions is answered exactly: reading them through
# their b-tree index and sorting by distance is cheaper than walking the graph past the rest.
EXACT_UP_TO = 5_000

# The reference's embedding, evaluated once per statement (an InitPlan the index scan takes as
# its ORDER BY value), so the neighbours come back in a single round trip.
REFERENCE = "(SELECT prompt_embedding FROM llm_decisions WHERE id = %(id)s)"
COLUMNS = (
    "id::text AS id, symbol, decision, confidence, outcome, created_at, "
    f"prompt_embedding <=> {REFERENCE} AS distance"
)


@dataclass(frozen=True)
class SimilarFilter:
    symbol: str | None = None
    agent_name: str | None = None

    def where(self) -> str:
        conditions = ["id <> %(id)s", "prompt_embedding IS NOT NULL"]
        if self.symbol is not None:
            conditions.append("symbol = %(symbol)s")
        if self.agent_name is not None:
            conditions.append("agent_name = %(agent_name)s")
        return " AND ".join(conditions)

    @property
    def narrows(self) -> bool:
        return self.symbol is not None or self.agent_name is not None


def similar_decisions(
    decision_id: uuid.UUID, limit: int, filters: SimilarFilter | None = None
) -> list[dict]:
    """The ``limit`` nearest decisions by cosine distance of their market-context embeddings.

    Each carries ``similarity`` = 1 - cosine distance, highest first (ties: newest first); the
    reference itself is excluded. A reference without an embedding has no neighbours.
    """
    filters = filters or SimilarFilter()
    params = {
        "id": str(decision_id),
        "symbol": filters.symbol,
        "agent_name": filters.agent_name,
        "limit": limit,
    }
    where = filters.where()
    # Every connection scans with HNSW_EF_SEARCH candidates and an iterative scan (app.db); a
    # page larger than half of that widens the scan for this transaction only.
    wide = limit * 2 > HNSW_EF_SEARCH
    with db.atomic() if wide else nullcontext():
        if wide:
            db.execute_sql("SELECT set_config('hnsw.ef_search', %s, true)", (str(limit * 2),))
        if not filters.narrows:
            found = _approximate(where, params)  # the common case: one statement
            # (No reference, or one without an embedding, gives NULL distances.)
            if len(found) == limit and found[0]["distance"] is not None:
                return _ranked(found)
        reference_exists, has_embedding, narrow = _reference(where, params, filters.narrows)
        if not reference_exists:
            raise NotFound("decision not found", decision_id=decision_id)
        if not has_embedding:
            return []
        if filters.narrows and not narrow:
            found = _approximate(where, params)
        if narrow or len(found) < limit:  # a narrow filter, or a walk that gave up early
            found = _exact(where, params)
    return _ranked(found)


def _reference(where: str, params: dict, narrows: bool) -> tuple[bool, bool, bool]:
    """Does the reference exist, has it an embedding, and does the filter match at most
    EXACT_UP_TO decisions (counted only that far): one round trip."""
    few = (
        f"(SELECT count(*) <= {EXACT_UP_TO} FROM "
        f"(SELECT 1 FROM llm_decisions WHERE {where} LIMIT {EXACT_UP_TO + 1}) m)"
        if narrows
        else "false"
    )
    row = db.execute_sql(
        f"SELECT prompt_embedding IS NOT NULL, {few} FROM llm_decisions WHERE id = %(id)s",
        params,
    ).fetchone()
    return (False, False, False) if row is None else (True, row[0], row[1])


def _ranked(found: list[dict]) -> list[dict]:
    """Highest similarity first, ties newest first (the index returns near-ties loosely)."""
    for item in found:
        item["similarity"] = 1 - item.pop("distance")
    return sorted(found, key=lambda item: (-item["similarity"], -item["created_at"].timestamp()))


def _rows(sql: str, params: dict) -> list[dict]:
    return dicts(db.execute_sql(sql, params))


def _approximate(where: str, params: dict) -> list[dict]:
    """The HNSW index scan (iterative: it keeps going while the filter discards rows)."""
    return _rows(
        f"SELECT {COLUMNS} FROM llm_decisions WHERE {where} "
        f"ORDER BY prompt_embedding <=> {REFERENCE} LIMIT %(limit)s",
        params,
    )


def _exact(where: str, params: dict) -> list[dict]:
    """Every matching row's distance, sorted: ``+ 0`` is a sort key the index cannot serve."""
    return _rows(
        f"SELECT {COLUMNS} FROM llm_decisions WHERE {where} "
        f"ORDER BY (prompt_embedding <=> {REFERENCE}) + 0, created_at DESC LIMIT %(limit)s",
        params,
    )
