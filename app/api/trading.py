"""Trading session control: start, stop, pause, resume."""

from __future__ import annotations

from app.access.roles import Role
from app.api.access import current_identity, requires
from app.api.base import ApiBlueprint, settings
from app.errors import Forbidden
from app.schemas.common import ErrorSchema
from app.schemas.sessions import (
    PausedSchema,
    SessionRefArgs,
    StartedSchema,
    StartTradingArgs,
    StoppedSchema,
    StopTradingArgs,
)
from app.trading import sessions

blp = ApiBlueprint("trading", __name__, url_prefix="/api/v1/trade", description="Trading control")


@blp.post("/start")
@requires(Role.TRADER)
@blp.arguments(StartTradingArgs)
@blp.response(201, StartedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid body, or LIVE without credentials")
@blp.alt_response(409, schema=ErrorSchema, description="A session is already active")
@blp.alt_response(
    503, schema=ErrorSchema, description="The exchange's markets or LIVE account are not readable"
)
def start(args: dict):
    """Start a new trading session for a symbol; a LIVE one needs the admin role."""
    if args["mode"] == "LIVE" and not current_identity().role.allows(Role.ADMIN):
        raise Forbidden(
            "insufficient role",
            details="only an admin may start a LIVE session; this key is "
            f"{current_identity().role}",
        )
    session = sessions.start_session(
        args["symbol"],
        args["initial_capital"],
        args["mode"],
        live_exchange=settings().live_exchange,
        market_exchange=settings().feed_exchange,
    )
    return {
        "message": "Trading started successfully",
        "session_id": session.id,
        "symbol": session.symbol,
        "mode": session.mode,
        "started_at": session.started_at,
    }


@blp.post("/stop")
@requires(Role.TRADER)
@blp.arguments(StopTradingArgs)
@blp.response(200, StoppedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Session already stopped")
@blp.alt_response(404, schema=ErrorSchema, description="Session not found")
def stop(args: dict):
    """Stop a session; final_capital omitted → marked-to-market equity."""
    session = sessions.stop_session(args["session_id"], args["final_capital"])
    return {
        "message": "Trading stopped successfully",
        "session_id": session.id,
        "final_capital": session.final_capital,
        "total_pnl": session.total_pnl,
        "total_trades": session.total_trades,
        "winning_trades": session.winning_trades,
        "losing_trades": session.losing_trades,
        "stopped_at": session.stopped_at,
    }


@blp.post("/pause")
@requires(Role.TRADER)
@blp.arguments(SessionRefArgs)
@blp.response(200, PausedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Session is not RUNNING")
@blp.alt_response(404, schema=ErrorSchema, description="Session not found")
def pause(args: dict):
    """Pause an active trading session."""
    session = sessions.pause_session(args["session_id"])
    return {
        "message": "Trading paused successfully",
        "session_id": session.id,
        "symbol": session.symbol,
        "status": session.status,
        "note": "Orders are still accepted, but the engine rejects every fill that would add "
        "exposure until POST /api/v1/trade/resume; orders that reduce or close a position "
        "still fill, and working orders and open positions are kept",
    }


@blp.post("/resume")
@requires(Role.TRADER)
@blp.arguments(SessionRefArgs)
@blp.response(200, PausedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Session is not PAUSED")
@blp.alt_response(404, schema=ErrorSchema, description="Session not found")
def resume(args: dict):
    """Resume a paused trading session."""
    session = sessions.resume_session(args["session_id"])
    return {
        "message": "Trading resumed successfully",
        "session_id": session.id,
        "symbol": session.symbol,
        "status": session.status,
        "note": "Fills that add exposure are allowed again",
    }
