"""Schemas for LLM decisions: filters, list/detail shapes, similarity and statistics."""

import math

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from app.agents.search import MAX_QUERY_CHARS
from app.models import DECISION_OUTCOMES, EMBEDDING_DIMENSIONS
from app.schemas.agents import AGENT_NAME
from app.schemas.common import DateRangeArgs, PagedListSchema
from app.schemas.fields import Amount, Choice, Number, Symbol, Timestamp, Uuid

OUTCOMES = DECISION_OUTCOMES
DECISIONS = ("BUY", "SELL", "HOLD", "CLOSE", "APPROVE", "REJECT")
DECISION_TYPE = validate.Regexp(
    r"^[a-z][a-z0-9_]{0,63}$", error="must be snake_case such as signal or risk_approval"
)
# Within the 64 KiB body limit, so the documented maximum can actually be sent.
MAX_TEXT = 60_000


def check_embedding(value: list[float] | None) -> None:
    """A market-context embedding: the decisions' dimension, not zero, within [-1e6, 1e6]."""
    if value is None:
        return
    if len(value) != EMBEDDING_DIMENSIONS:
        raise ValidationError(f"must have exactly {EMBEDDING_DIMENSIONS} numbers")
    if not math.fsum(x * x for x in value) > 0:
        raise ValidationError("must not be the zero vector (cosine similarity is undefined)")
    if any(abs(x) > 1e6 for x in value):
        raise ValidationError("values must be within [-1e6, 1e6]")


def embedding_field(**kwargs) -> fields.List:
    """A list of EMBEDDING_DIMENSIONS finite numbers (checked by :func:`check_embedding`)."""
    return fields.List(
        fields.Float(allow_nan=False, metadata={"minimum": -1e6, "maximum": 1e6}),
        metadata={"minItems": EMBEDDING_DIMENSIONS, "maxItems": EMBEDDING_DIMENSIONS,
                  **kwargs.pop("metadata", {})},
        **kwargs,
    )  # fmt: skip


class DecisionSchema(Schema):
    id = Uuid()
    session_id = Uuid(allow_none=True)
    agent_name = fields.String()
    symbol = fields.String()
    decision_type = fields.String()
    decision = fields.String(metadata={"enum": list(DECISIONS)})
    confidence = Number()
    reasoning = fields.String()
    context = fields.Dict()
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    model = fields.String()
    outcome = fields.String(metadata={"enum": list(OUTCOMES)})
    actual_pnl = Number(allow_none=True)
    latency_ms = fields.Integer()
    cost = Number()
    created_at = Timestamp()
    resolved_at = Timestamp(allow_none=True)


class DecisionDetailSchema(DecisionSchema):
    prompt = fields.String(allow_none=True)
    response = fields.String(allow_none=True)
    prompt_embedding = fields.Method(
        "_embedding", metadata={"type": "array", "items": {"type": "number"}, "nullable": True}
    )

    def _embedding(self, decision):
        # A row dict (the detail view) or a Decision (just recorded).
        vector = self.get_attribute(decision, "prompt_embedding", None)
        return None if vector is None else [float(x) for x in vector]


class DecisionListSchema(PagedListSchema):
    decisions = fields.List(fields.Nested(DecisionSchema))
    filter = fields.Dict()


class DecisionFilterArgs(DateRangeArgs):
    symbol = Symbol()
    decision_type = fields.String(validate=DECISION_TYPE)
    outcome = Choice(OUTCOMES)
    model = fields.String(validate=validate.Length(1, 200))
    agent_name = fields.String(validate=AGENT_NAME)
    session_id = Uuid()


class DecisionListArgs(DecisionFilterArgs):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, 10_000_000))


class SimilarArgs(Schema):
    limit = fields.Integer(load_default=10, validate=validate.Range(1, 50))
    symbol = Symbol(metadata={"description": "only decisions on this symbol"})
    agent_name = fields.String(
        validate=AGENT_NAME, metadata={"description": "only decisions of this agent"}
    )


class SimilarDecisionSchema(Schema):
    id = Uuid()
    symbol = fields.String()
    decision = fields.String()
    confidence = Number()
    outcome = fields.String()
    similarity = Number()
    created_at = Timestamp()


class SimilarListSchema(Schema):
    decision_id = Uuid()
    similar = fields.List(fields.Nested(SimilarDecisionSchema))
    count = fields.Integer()


class DecisionStatsSchema(Schema):
    total_decisions = fields.Integer()
    by_outcome = fields.Dict(keys=fields.String(), values=fields.Integer())
    by_decision_type = fields.Dict(keys=fields.String(), values=fields.Integer())
    avg_confidence = Number()
    success_rate = Number()
    avg_pnl = Number()
    by_model = fields.Dict(keys=fields.String(), values=fields.Integer())
    total_cost = Number()
    avg_latency_ms = fields.Integer()


class NewDecisionArgs(Schema):
    agent_name = fields.String(required=True, validate=AGENT_NAME)
    symbol = Symbol(required=True)
    decision_type = fields.String(required=True, validate=DECISION_TYPE)
    decision = Choice(DECISIONS, required=True)
    confidence = Amount(required=True, validate=validate.Range(0, 1, error="must be in [0, 1]"))
    model = fields.String(required=True, validate=validate.Length(1, 200))
    reasoning = fields.String(load_default="", validate=validate.Length(max=MAX_TEXT))
    context = fields.Dict(keys=fields.String(), load_default=dict)
    prompt = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(max=MAX_TEXT)
    )
    response = fields.String(
        allow_none=True, load_default=None, validate=validate.Length(max=MAX_TEXT)
    )
    prompt_embedding = embedding_field(allow_none=True, load_default=None)
    prompt_tokens = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 10**9))
    completion_tokens = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(0, 10**9)
    )
    latency_ms = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 10**9))
    cost = Amount(load_default=0)
    session_id = Uuid(allow_none=True, load_default=None)
    outcome = Choice(OUTCOMES, load_default="PENDING")
    actual_pnl = Amount(allow_negative=True, allow_none=True, load_default=None)

    @validates("prompt_embedding")
    def _embedding_shape(self, value, **kwargs):
        check_embedding(value)


class DecisionCreatedSchema(Schema):
    decision = fields.Nested(DecisionDetailSchema)
    message = fields.String()


class SearchArgs(DateRangeArgs):
    query = fields.String(
        validate=validate.Length(1, MAX_QUERY_CHARS),
        metadata={"description": "words to find in reasoning, response and prompt; quotes make "
                  'a phrase, a leading "-" excludes a word, "or" offers alternatives'},
    )  # fmt: skip
    embedding = embedding_field(
        metadata={"description": "rank by cosine similarity to the decisions' market-context "
                  "embeddings, as /similar does"}
    )  # fmt: skip
    symbol = Symbol()
    agent_name = fields.String(validate=AGENT_NAME)
    decision_type = fields.String(validate=DECISION_TYPE)
    outcome = Choice(OUTCOMES)
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))

    @validates("query")
    def _has_words(self, value, **kwargs):
        if not value.strip():
            raise ValidationError("must contain something to search for")

    @validates("embedding")
    def _embedding_shape(self, value, **kwargs):
        check_embedding(value)

    @validates_schema
    def _query_or_embedding(self, data, **kwargs):
        if data.get("query") is None and data.get("embedding") is None:
            raise ValidationError("give a query, an embedding or both", "query")


class SearchHitSchema(Schema):
    decision = fields.Nested(DecisionSchema)
    score = Number(metadata={"minimum": 0, "maximum": 1})
    highlight = fields.String(
        metadata={"description": "the best matching fragment of the reasoning, matched words "
                  "between ** and **"}
    )  # fmt: skip


class SearchResultSchema(Schema):
    results = fields.List(fields.Nested(SearchHitSchema))
    count = fields.Integer()
    mode = fields.String(metadata={"enum": ["full_text", "embedding", "hybrid"]})
    semantic = fields.String(
        metadata={"enum": ["off", "on", "failed"], "description": "whether the query was also "
                  "ranked by meaning (LLM_EMBEDDING_MODEL); failed: the endpoint did not answer"}
    )  # fmt: skip
    notices = fields.List(fields.String())
