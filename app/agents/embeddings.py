"""Text embeddings of what decisions say, from an OpenAI-compatible ``/embeddings`` endpoint.

Off unless LLM_EMBEDDING_MODEL is set (with LLM_BASE_URL). Then the agents process embeds the
reasoning of every decision, its own and those posted by external agents, shortly after it is
recorded (:class:`EmbeddingSweep`), and a text search embeds its query to rank by meaning as well
as by words. Any failure (timeout, HTTP error, an answer of the wrong shape) is an
:class:`EmbeddingFailure`: the sweep retries later and the search falls back to full text.
"""

from __future__ import annotations

import logging
import math
import time

from app.db import db
from app.settings import Settings

log = logging.getLogger(__name__)

# Long reasoning is cut before embedding: the opening states the decision and its grounds, and
# every embeddings model has an input limit.
MAX_INPUT_CHARS = 8_000
SWEEP_BATCH = 32
SWEEP_IDLE_SECONDS = 2.0
SWEEP_MAX_BACKOFF_SECONDS = 60.0


class EmbeddingFailure(Exception):
    """The endpoint gave no usable vectors."""


class Embedder:
    """One model on one OpenAI-compatible endpoint; no retries (callers decide)."""

    def __init__(self, settings: Settings, timeout: float):
        # Imported here: the web process loads the openai client (about 30 MiB per worker) only
        # when semantic search is configured.
        import openai

        self.model = settings.llm_embedding_model
        self.client = openai.OpenAI(
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, all of one dimension, finite and non-zero."""
        import openai

        from app.agents.llm import count_llm_call, failure_kind

        started = time.perf_counter()
        try:
            answer = self.client.embeddings.create(
                model=self.model,
                input=[text[:MAX_INPUT_CHARS] for text in texts],
                encoding_format="float",  # not every compatible server speaks base64
            )
            vectors = _vectors(answer, len(texts))
        except (openai.OpenAIError, ValueError, TypeError, AttributeError) as exc:
            count_llm_call(self.model, _elapsed_ms(started), error=failure_kind(exc))
            raise EmbeddingFailure(f"{self.model}: {type(exc).__name__}: {exc}") from None
        count_llm_call(self.model, _elapsed_ms(started))
        return vectors


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def _vectors(answer, expected: int) -> list[list[float]]:
    items = sorted(answer.data, key=lambda item: item.index)
    if len(items) != expected:
        raise ValueError(f"{len(items)} embeddings for {expected} inputs")
    vectors = [[float(x) for x in item.embedding] for item in items]
    dimensions = {len(vector) for vector in vectors}
    if len(dimensions) != 1 or 0 in dimensions:
        raise ValueError(f"embeddings of dimensions {sorted(dimensions)}")
    for vector in vectors:
        if not all(math.isfinite(x) for x in vector) or not any(vector):
            raise ValueError("an embedding is zero or not finite")
    return vectors


def build_embedder(settings: Settings, timeout: float) -> Embedder | None:
    """The configured embedder, or None when semantic search is off."""
    if not (settings.llm_base_url and settings.llm_embedding_model):
        return None
    return Embedder(settings, timeout)


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form, for a ``%s::vector`` parameter."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


PENDING = """
SELECT d.id::text, d.reasoning FROM llm_decisions d
WHERE d.reasoning <> '' AND NOT EXISTS (
    SELECT 1 FROM decision_text_embeddings e WHERE e.decision_id = d.id AND e.model = %s)
ORDER BY d.created_at DESC LIMIT %s
"""


def embed_pending(embedder: Embedder, batch: int = SWEEP_BATCH) -> int:
    """Embed the reasoning of up to ``batch`` decisions that have none for this model, newest
    first; how many were stored. No connection is held during the call to the endpoint."""
    with db.connection_context():
        pending = db.execute_sql(PENDING, (embedder.model, batch)).fetchall()
    if not pending:
        return 0
    vectors = embedder.embed([reasoning for _, reasoning in pending])
    with db.connection_context(), db.atomic():
        for (decision_id, _), vector in zip(pending, vectors, strict=True):
            # A decision deleted meanwhile (its session purged) is skipped, not an error.
            db.execute_sql(
                "INSERT INTO decision_text_embeddings (decision_id, model, embedding) "
                "SELECT id, %s, %s::vector FROM llm_decisions WHERE id = %s "
                "ON CONFLICT (decision_id, model) DO NOTHING",
                (embedder.model, vector_literal(vector), decision_id),
            )
    return len(pending)


class EmbeddingSweep:
    """Runs :func:`embed_pending` from the agents loop: at once while there is a backlog, every
    few seconds when idle, and with a doubling back-off while the endpoint fails."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self.next_run = 0.0
        self.backoff = SWEEP_IDLE_SECONDS
        self.failing = False

    def run_if_due(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        if now < self.next_run:
            return 0
        try:
            stored = embed_pending(self.embedder)
        except EmbeddingFailure as exc:
            if not self.failing:
                log.warning("embedding decisions failed, retrying with back-off: %s", exc)
            self.failing = True
            self.next_run = now + self.backoff
            self.backoff = min(self.backoff * 2, SWEEP_MAX_BACKOFF_SECONDS)
            return 0
        if self.failing:
            log.info("embedding decisions works again")
        self.failing = False
        self.backoff = SWEEP_IDLE_SECONDS
        self.next_run = now if stored == SWEEP_BATCH else now + SWEEP_IDLE_SECONDS
        return stored
