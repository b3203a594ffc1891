"""LLM decisions: history with filters, detail, pgvector similarity, statistics, recording."""

from __future__ import annotations

from flask import current_app

from app.access.ratelimit import GENERAL
from app.access.roles import Role
from app.agents import decisions, search, similarity
from app.agents.embeddings import Embedder, build_embedder
from app.api.access import requires
from app.api.base import ApiBlueprint, settings
from app.identifiers import parse_uuid
from app.models import format_timestamp
from app.schemas.common import ErrorSchema, page_of
from app.schemas.decisions import (
    DecisionCreatedSchema,
    DecisionDetailSchema,
    DecisionFilterArgs,
    DecisionListArgs,
    DecisionListSchema,
    DecisionStatsSchema,
    NewDecisionArgs,
    SearchArgs,
    SearchResultSchema,
    SimilarArgs,
    SimilarListSchema,
)

blp = ApiBlueprint("decisions", __name__, url_prefix="/api/v1/decisions", description="Decisions")

# A search waits this long for the query's embedding, then ranks by full text alone.
QUERY_EMBEDDING_TIMEOUT_SECONDS = 2.0


def _echo(args: dict) -> dict:
    """The filter as the client can read it back."""
    return {
        key: format_timestamp(value)
        if hasattr(value, "tzinfo")
        else str(value)
        if key == "session_id"
        else value
        for key, value in args.items()
    }


@blp.get("")
@requires(Role.VIEWER)
@blp.arguments(DecisionListArgs, location="query")
@blp.response(200, DecisionListSchema)
def list_decisions(args: dict):
    """List LLM decisions with filtering and pagination."""
    echo = _echo(args)
    page = page_of(args)
    listing = decisions.list_decisions(decisions.DecisionFilter(**args), page)
    return {**listing.body("decisions"), "filter": echo}


@blp.get("/stats")
@requires(Role.VIEWER)
@blp.arguments(DecisionFilterArgs, location="query")
@blp.response(200, DecisionStatsSchema)
def stats(args: dict):
    """Get aggregated statistics for LLM decisions."""
    return decisions.decision_stats(decisions.DecisionFilter(**args))


@blp.get("/<id:decision_id>")
@requires(Role.VIEWER)
@blp.response(200, DecisionDetailSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid decision ID")
@blp.alt_response(404, schema=ErrorSchema, description="Decision not found")
def get_decision(decision_id: str):
    """Get one decision with its prompt, response and market-context embedding."""
    return decisions.get_decision(parse_uuid(decision_id, "decision_id"))


@blp.get("/<id:decision_id>/similar")
@requires(Role.VIEWER)
@blp.arguments(SimilarArgs, location="query")
@blp.response(200, SimilarListSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid decision ID or limit")
@blp.alt_response(404, schema=ErrorSchema, description="Decision not found")
def similar(args: dict, decision_id: str):
    """Find decisions made in a similar market context (pgvector cosine similarity),
    optionally only on one symbol or of one agent."""
    reference = parse_uuid(decision_id, "decision_id")
    limit = args.pop("limit")
    found = similarity.similar_decisions(reference, limit, similarity.SimilarFilter(**args))
    return {"decision_id": reference, "similar": found, "count": len(found)}


@blp.post("")
@requires(Role.TRADER)
@blp.arguments(NewDecisionArgs)
@blp.response(201, DecisionCreatedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid decision")
@blp.alt_response(404, schema=ErrorSchema, description="Session not found")
def create_decision(args: dict):
    """Record a decision made by an external agent (counts as its heartbeat)."""
    decision = decisions.record_decision(decisions.NewDecision(**args))
    return {"decision": decision, "message": "Decision recorded successfully"}


@blp.post("/search")
@requires(Role.VIEWER, counts_as=GENERAL, audited=False)  # a read, sent as POST for its body
@blp.arguments(SearchArgs)
@blp.response(200, SearchResultSchema)
@blp.alt_response(400, schema=ErrorSchema, description="No query or embedding, or a bad one")
def search_decisions(args: dict):
    """Search decisions by what they say (full text, corrected misspellings, and meaning when
    LLM_EMBEDDING_MODEL is set) and/or by a market-context embedding; best first."""
    request = search.SearchRequest(
        query=args.pop("query", None),
        embedding=args.pop("embedding", None),
        limit=args.pop("limit"),
        filters=search.SearchFilter(**args),
    )
    return search.search_decisions(request, _embedder()).body()


def _embedder() -> Embedder | None:
    """The app's query embedder (None: semantic search is off), built on first use."""
    state = current_app.extensions["cryptofunk"]
    if "embedder" not in state:
        state["embedder"] = build_embedder(settings(), QUERY_EMBEDDING_TIMEOUT_SECONDS)
    return state["embedder"]
