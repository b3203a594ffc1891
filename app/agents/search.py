"""Decision search: find past decisions by what they say, or by a market-context vector.

- **Full text** over reasoning, response and prompt (the generated ``search_document``, GIN
  indexed), parsed by ``websearch_to_tsquery`` so quotes make phrases and ``-`` excludes. The
  newest :data:`CANDIDATES` matches are ranked by ``ts_rank_cd``; a full-text match scores
  0.5 + rank / (rank + 1) / 2, so above 0.5.
- **Corrected words**, when full text finds fewer than ``limit`` and the query uses no
  operator (quotes, ``-``, ``or``): each query word, and for a
  short query the words run together (``btc usdt`` → ``btcusdt``), is matched by trigram
  similarity to the words decisions actually use (``decision_words``), and the search runs again
  with those. Such a match scores below 0.5: half its rank times the corrections' similarity.
- **An embedding** of the decisions' own dimension ranks by cosine distance to their
  market-context embeddings, as ``/similar`` does (score = 1 - distance, at least 0).
- **Semantic**, when an embeddings model is configured: the query is embedded too and ranked
  against the reasoning embeddings the agents process stores.

When more than one ranking applies they are fused by reciprocal rank (k = 60), the fused score
scaled so that first place in every ranking is 1.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

from app.agents.embeddings import Embedder, EmbeddingFailure, vector_literal
from app.db import db, is_timeout
from app.statements import dicts

MAX_QUERY_CHARS = 500
# Full-text matches ranked per query, newest first: a common word matches a large share of a
# million decisions, and ranking every one of them would take seconds.
CANDIDATES = 200
# A query whose every word is in at least this share of the decisions (the column's statistics)
# is answered by walking the decisions newest first until CANDIDATES match: a few thousand
# rows. The planner's own estimate multiplies the words' shares as if they were independent,
# so for a common phrase it expects a few matches and reads all of them through the index
# (tens of thousands). A walk that takes longer than WALK_TIMEOUT_MS (the words are common,
# their combination is not) is abandoned for the planner's plan.
FREQUENT_SHARE = 0.02
WALK_TIMEOUT_MS = 250
STATISTICS_SECONDS = 600.0
# Each ranking contributes this many before fusion (the largest page).
POOL = 100
FUSION_K = 60
# A corrected word is at least this similar (pg_trgm's default threshold).
MIN_WORD_SIMILARITY = 0.3
CORRECTIONS_PER_WORD = 3
RUN_TOGETHER_UP_TO_WORDS = 3
# An exact scan of the filtered rows beats walking the HNSW graph past the rest.
EXACT_UP_TO = 5_000
HEADLINE_OPTIONS = "MaxFragments=1, MaxWords=24, MinWords=8, StartSel=**, StopSel=**"

WORD = re.compile(r"^[a-z][a-z0-9/]{2,31}$")  # as search_words() in the migration
# Quotes, a "-" exclusion or "or": the caller wrote exactly what to match, so nothing is
# corrected (a correction would drop the operators).
OPERATORS = re.compile(r'"|(?:^|\s)-\w|\bor\b', re.IGNORECASE)

LIST_COLUMNS = (
    "d.id::text AS id, d.session_id::text AS session_id, d.agent_name, d.symbol, "
    "d.decision_type, d.decision, d.confidence, d.reasoning, d.context, d.prompt_tokens, "
    "d.completion_tokens, d.model, d.outcome, d.actual_pnl, d.latency_ms, d.cost, "
    "d.created_at, d.resolved_at"
)


@dataclass(frozen=True)
class SearchFilter:
    symbol: str | None = None
    agent_name: str | None = None
    decision_type: str | None = None
    outcome: str | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None

    CONDITIONS = {
        "symbol": "d.symbol = %(symbol)s",
        "agent_name": "d.agent_name = %(agent_name)s",
        "decision_type": "d.decision_type = %(decision_type)s",
        "outcome": "d.outcome = %(outcome)s",
        "from_date": "d.created_at >= %(from_date)s",
        "to_date": "d.created_at <= %(to_date)s",
    }

    def where(self, *more: str) -> str:
        conditions = [sql for name, sql in self.CONDITIONS.items() if getattr(self, name)]
        return " AND ".join([*more, *conditions]) or "true"

    @property
    def narrows(self) -> bool:
        return any(getattr(self, name) is not None for name in self.CONDITIONS)

    def params(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchRequest:
    query: str | None = None
    embedding: list[float] | None = None
    filters: SearchFilter = field(default_factory=SearchFilter)
    limit: int = 20


@dataclass
class SearchResult:
    results: list[dict]
    mode: str  # full_text, embedding, hybrid
    semantic: str  # off, on, failed
    notices: list[str] = field(default_factory=list)

    def body(self) -> dict:
        body = {"results": self.results, "count": len(self.results), "mode": self.mode,
                "semantic": self.semantic}  # fmt: skip
        if self.notices:
            body["notices"] = self.notices
        return body


def search_decisions(request: SearchRequest, embedder: Embedder | None = None) -> SearchResult:
    """The best ``limit`` decisions for the query and/or embedding, best first."""
    rankings: list[list[tuple[str, float]]] = []
    highlight_query: tuple[str, dict] | None = None
    semantic = "off" if embedder is None else "on"
    notices: list[str] = []
    if request.query is not None:
        text_ranking, highlight_query = _text_ranking(request)
        rankings.append(text_ranking)
        if embedder is not None:
            try:
                [vector] = embedder.embed([request.query])
                rankings.append(_semantic_ranking(vector, embedder.model, request))
            except EmbeddingFailure:
                semantic = "failed"
                notices.append("the embeddings endpoint failed; ranked by full text only")
    if request.embedding is not None:
        rankings.append(_context_ranking(request.embedding, request))
    ranked = _fused(rankings) if len(rankings) > 1 else rankings[0]
    ranked = ranked[: request.limit]
    mode = _mode(request, semantic)
    return SearchResult(_decisions(ranked, highlight_query), mode, semantic, notices)


def _mode(request: SearchRequest, semantic: str) -> str:
    if request.query is None:
        return "embedding"
    if request.embedding is not None or semantic == "on":
        return "hybrid"
    return "full_text"


# -- full text ------------------------------------------------------------------------------
def _text_ranking(request: SearchRequest) -> tuple[list[tuple[str, float]], tuple[str, dict]]:
    """Full-text matches, then corrected-word matches when they are too few."""
    query = "websearch_to_tsquery('english', %(query)s)"
    params = {**request.filters.params(), "query": request.query}
    alternatives = re.search(r"\bor\b", request.query, re.IGNORECASE) is not None
    positive = re.sub(r'(?:^|\s)-\S+|"', " ", request.query)
    walk = _frequent(positive, any_of=alternatives)
    exact = [(id_, 0.5 + rank / 2) for id_, rank in _matches(query, params, request.filters, walk)]
    if len(exact) >= request.limit or OPERATORS.search(request.query):
        return exact, (query, params)
    corrected = _corrected_query(request.query)
    if corrected is None:
        return exact, (query, params)
    fuzzy_query, fuzzy_params, similarity, best = corrected
    params = {**params, **fuzzy_params}
    seen = {id_ for id_, _ in exact}
    walk = any(_frequent(words, any_of=False) for words in best)
    fuzzy = [
        (id_, similarity * rank / 2)
        for id_, rank in _matches(fuzzy_query, params, request.filters, walk)
        if id_ not in seen
    ]
    # Highlight what was found: the words as typed for full-text hits, the corrections after.
    highlight = f"({query}) || ({fuzzy_query})" if exact else fuzzy_query
    return exact + fuzzy, (highlight, params)


def _matches(
    tsquery: str, params: dict, filters: SearchFilter, walk: bool
) -> list[tuple[str, float]]:
    """(id, rank / (rank + 1)) of the newest CANDIDATES matches, best POOL first; ``walk``:
    read the decisions newest first (common words) instead of through the full-text index."""
    where = filters.where(f"d.search_document @@ ({tsquery})")
    # The rank is computed outside the candidate query: inside, a plan that sorts all the
    # matches would rank every one of them.
    sql = (
        f"SELECT c.id::text, ts_rank_cd(c.search_document, {tsquery}, 32) AS rank "
        f"FROM (SELECT d.id, d.search_document, d.created_at FROM llm_decisions d "
        f"WHERE {where} ORDER BY d.created_at DESC LIMIT {CANDIDATES}) c "
        f"ORDER BY rank DESC, c.created_at DESC LIMIT {POOL}"
    )
    if walk:
        try:
            with db.atomic():
                db.execute_sql("SET LOCAL enable_bitmapscan = off")
                db.execute_sql(f"SET LOCAL statement_timeout = {WALK_TIMEOUT_MS}")
                rows = db.execute_sql(sql, params).fetchall()
            return [(id_, float(rank)) for id_, rank in rows]
        except Exception as exc:
            if not is_timeout(exc):
                raise
    return [(id_, float(rank)) for id_, rank in db.execute_sql(sql, params).fetchall()]


_statistics: dict = {"read_at": float("-inf"), "shares": {}}


def _lexeme_shares() -> dict[str, float]:
    """The share of decisions containing each common lexeme, from the column's statistics
    (ANALYZE's most common elements), read again every STATISTICS_SECONDS."""
    now = time.monotonic()
    if now - _statistics["read_at"] > STATISTICS_SECONDS:
        row = db.execute_sql(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'llm_decisions' "
            "AND attname = 'search_document'"
        ).fetchone()
        lexemes, shares = row if row and row[0] else ([], [])
        _statistics.update(read_at=now, shares=dict(zip(lexemes, shares, strict=False)))
    return _statistics["shares"]


def _frequent(words: str, *, any_of: bool) -> bool:
    """Are the words common enough (every one, or with ``any_of`` any one) to walk for?"""
    shares = _lexeme_shares()
    if not shares:
        return False  # no statistics yet: a small table, the planner's plan is right
    lexemes = db.execute_sql(
        "SELECT tsvector_to_array(to_tsvector('english', %s))", (words,)
    ).fetchone()[0]
    if not lexemes:
        return False
    found = [shares.get(lexeme, 0.0) for lexeme in lexemes]
    return (max(found) if any_of else min(found)) >= FREQUENT_SHARE


CORRECTIONS = f"""
SELECT w.typed, v.word, v.similarity
FROM unnest(%(words)s::text[]) AS w(typed)
CROSS JOIN LATERAL (
    SELECT word, (
        SELECT count(*) FROM unnest(trigrams) t WHERE t = ANY (search_trigrams(w.typed))
    )::float / cardinality(
        ARRAY(SELECT unnest(trigrams) UNION SELECT unnest(search_trigrams(w.typed)))
    ) AS similarity
    FROM decision_words
    WHERE trigrams && search_trigrams(w.typed)
    ORDER BY similarity DESC, word
    LIMIT {CORRECTIONS_PER_WORD}
) v
WHERE v.similarity >= {MIN_WORD_SIMILARITY}
"""


def query_words(query: str) -> list[str]:
    """The query's words by the vocabulary's rule (letters first, 3 to 32 characters)."""
    words = re.split(r"[^a-z0-9/]+", query.lower())
    return list(dict.fromkeys(word for word in words if WORD.match(word)))


def _corrected_query(query: str) -> tuple[str, dict, float, list[str]] | None:
    """A tsquery of the nearest known words: every typed word (any of its corrections), or
    for a short query, its words run together; its parameters, the corrections' similarity,
    and for each alternative its best corrections as text. None when nothing is near enough."""
    words = query_words(query)
    run_together = re.sub(r"[^a-z0-9]+", "", query.lower())
    alternatives = list(words)
    if 1 < len(words) <= RUN_TOGETHER_UP_TO_WORDS and WORD.match(run_together):
        alternatives.append(run_together)
    if not alternatives:
        return None
    corrections: dict[str, list[tuple[str, float]]] = {}
    for typed, word, similarity in db.execute_sql(CORRECTIONS, {"words": alternatives}):
        corrections.setdefault(typed, []).append((word, similarity))
    params: dict = {}

    def any_of(typed: str) -> str:
        terms = []
        for word, _ in corrections[typed]:
            name = f"w{len(params)}"
            params[name] = word
            terms.append(f"plainto_tsquery('english', %({name})s)")
        return "(" + " || ".join(terms) + ")"

    groups, similarities, best = [], [], []
    every_word = [typed for typed in words if typed in corrections]
    if every_word:
        groups.append(" && ".join(any_of(typed) for typed in every_word))
        similarities.append(min(corrections[typed][0][1] for typed in every_word))
        best.append(" ".join(corrections[typed][0][0] for typed in every_word))
    if run_together in corrections and run_together not in words:
        groups.append(any_of(run_together))
        similarities.append(corrections[run_together][0][1])
        best.append(corrections[run_together][0][0])
    if not groups:
        return None
    tsquery = " || ".join(f"({group})" for group in groups)
    return tsquery, params, max(similarities), best


# -- vectors -----------------------------------------------------------------------------------
def _context_ranking(vector: list[float], request: SearchRequest) -> list[tuple[str, float]]:
    """Cosine similarity to the decisions' market-context embeddings (``prompt_embedding``)."""
    params = {**request.filters.params(), "vector": vector_literal(vector)}
    where = request.filters.where("d.prompt_embedding IS NOT NULL")
    found = _nearest(where, "d.prompt_embedding <=> %(vector)s::vector", params, request.filters)
    return [(id_, max(0.0, 1 - float(distance))) for id_, distance in found]


def _semantic_ranking(vector, model: str, request: SearchRequest) -> list[tuple[str, float]]:
    """Cosine similarity of the query's embedding to the stored reasoning embeddings."""
    params = {**request.filters.params(), "vector": vector_literal(vector), "model": model,
              "dimensions": len(vector)}  # fmt: skip
    # A vector of another dimension (the model changed) cannot be compared: skipped.
    where = request.filters.where(
        "e.model = %(model)s", "vector_dims(e.embedding) = %(dimensions)s"
    )
    distance = "e.embedding <=> %(vector)s::vector"
    rows = db.execute_sql(
        f"SELECT d.id::text, {distance} AS distance FROM decision_text_embeddings e "
        f"JOIN llm_decisions d ON d.id = e.decision_id WHERE {where} "
        f"ORDER BY distance, d.created_at DESC LIMIT {POOL}",
        params,
    ).fetchall()
    return [(id_, max(0.0, 1 - float(d))) for id_, d in rows]


def _nearest(where: str, distance: str, params: dict, filters: SearchFilter) -> list[tuple]:
    """The POOL nearest by ``distance``: the HNSW index, or an exact scan for a narrow filter
    or when the index walk gave up before the page was full."""
    select = f"SELECT d.id::text, {distance} FROM llm_decisions d WHERE {where}"
    exact = f"{select} ORDER BY ({distance}) + 0, d.created_at DESC LIMIT {POOL}"
    if filters.narrows:
        few = db.execute_sql(
            f"SELECT count(*) <= {EXACT_UP_TO} FROM (SELECT 1 FROM llm_decisions d "
            f"WHERE {where} LIMIT {EXACT_UP_TO + 1}) m",
            params,
        ).fetchone()[0]
        if few:
            return db.execute_sql(exact, params).fetchall()
    found = db.execute_sql(f"{select} ORDER BY {distance} LIMIT {POOL}", params).fetchall()
    if len(found) < POOL and filters.narrows:
        found = db.execute_sql(exact, params).fetchall()
    return found


# -- fusion and the answer ---------------------------------------------------------------------
def _fused(rankings: list[list[tuple[str, float]]]) -> list[tuple[str, float]]:
    """Reciprocal rank fusion, scaled so that first place in every ranking scores 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for place, (id_, _) in enumerate(ranking, start=1):
            scores[id_] = scores.get(id_, 0.0) + 1 / (FUSION_K + place)
    best = len(rankings) / (FUSION_K + 1)
    return sorted(((id_, score / best) for id_, score in scores.items()),
                  key=lambda pair: -pair[1])  # fmt: skip


def _decisions(ranked: list[tuple[str, float]], highlight: tuple[str, dict] | None) -> list[dict]:
    """The list-item decisions of ``ranked``, in its order, each with its score and, for a
    text query, the best matching fragment of its reasoning."""
    if not ranked:
        return []
    ids = [id_ for id_, _ in ranked]
    if highlight is not None:
        tsquery, params = highlight
        headline = (
            f", ts_headline('english', d.reasoning, {tsquery}, %(headline_options)s) AS highlight"
        )
        params = {**params, "headline_options": HEADLINE_OPTIONS}
    else:
        headline, params = "", {}
    rows = dicts(
        db.execute_sql(
            f"SELECT {LIST_COLUMNS}{headline} FROM llm_decisions d "
            "WHERE d.id = ANY(%(ids)s::uuid[])",
            {**params, "ids": ids},
        )
    )
    by_id = {row["id"]: row for row in rows}
    results = []
    for id_, score in ranked:
        row = by_id.get(id_)
        if row is None:
            continue  # deleted between the ranking and this read
        fragment = row.pop("highlight", None)
        result = {"decision": row, "score": min(1.0, max(0.0, score))}
        if fragment and "**" in fragment:
            result["highlight"] = fragment
        results.append(result)
    return results
