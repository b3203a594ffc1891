"""Trading sessions: list and detail."""

from __future__ import annotations

from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint
from app.identifiers import parse_uuid
from app.schemas.common import ErrorSchema, page_of
from app.schemas.sessions import (
    EquityCurveArgs,
    EquityCurveSchema,
    SessionEnvelopeSchema,
    SessionListArgs,
    SessionListSchema,
)
from app.trading import sessions

blp = ApiBlueprint("sessions", __name__, url_prefix="/api/v1/sessions", description="Sessions")


@blp.get("")
@requires(Role.VIEWER)
@blp.arguments(SessionListArgs, location="query")
@blp.response(200, SessionListSchema)
def list_sessions(args: dict):
    """Get trading sessions, newest first, filtered by status, symbol and mode."""
    page = page_of(args)
    return sessions.list_sessions(sessions.SessionFilter(**args), page).body("sessions")


@blp.get("/<id:session_id>")
@requires(Role.VIEWER)
@blp.response(200, SessionEnvelopeSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid session ID format")
@blp.alt_response(404, schema=ErrorSchema, description="Session not found")
def get_session(session_id: str):
    """Get one trading session with live equity and PnL (final figures once stopped)."""
    return {"session": sessions.session_figures(parse_uuid(session_id, "session_id"))}


@blp.get("/<id:session_id>/equity")
@requires(Role.VIEWER)
@blp.arguments(EquityCurveArgs, location="query")
@blp.response(200, EquityCurveSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid session ID or query")
@blp.alt_response(404, schema=ErrorSchema, description="Session not found")
def get_equity_curve(args: dict, session_id: str):
    """The session's equity curve: sampled at every fill and at a fixed interval."""
    reference = parse_uuid(session_id, "session_id")
    page = page_of(args)
    points = sessions.equity_curve(reference, page, args.get("from_date"), args.get("to_date"))
    return {"session_id": reference, "points": points, "count": len(points)}
