"""API info, liveness/health, component status and Prometheus metrics."""

from __future__ import annotations

import time

from flask import Response

from app.api.base import ApiBlueprint
from app.db import CONNECTION_ERRORS, db
from app.metrics import render
from app.realtime.hub import hub
from app.realtime.presence import connected_clients
from app.schemas.system import HealthSchema, InfoSchema, StatusSchema
from app.settings import VERSION

STARTED_AT = time.monotonic()

blp = ApiBlueprint("system", __name__, url_prefix="/api/v1", description="Health and status")
root = ApiBlueprint("root", __name__, url_prefix="/", description="API info, probes, metrics")


def uptime() -> str:
    """Process uptime in Go duration style: ``2h15m30s``, ``15m30s``, ``30s``."""
    seconds = int(time.monotonic() - STARTED_AT)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def database_ok() -> bool:
    try:
        db.execute_sql("SELECT 1")
    except CONNECTION_ERRORS:
        if not db.is_closed():
            db.manual_close()
        return False
    return True


def health_body() -> tuple[dict, int]:
    if database_ok():
        return {"status": "healthy", "version": VERSION, "uptime": uptime()}, 200
    return {"status": "unhealthy", "error": "database connection failed", "version": VERSION}, 503


@root.get("/")
@root.response(200, InfoSchema)
def info():
    """Get API information."""
    return {"name": "CryptoFunk Trading API", "version": VERSION, "status": "running"}


@root.get("/health")
@root.response(200, HealthSchema, description="API and database are healthy")
@root.alt_response(503, schema=HealthSchema, description="Database unreachable")
def health_root():
    """Check API and database health (liveness/readiness probe)."""
    return health_body()


@root.get("/metrics")
@root.doc(
    responses={"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}
)
def metrics():
    """Prometheus metrics: HTTP requests, and orders/sessions/positions/agents by status."""
    payload, content_type = render()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)


@blp.get("/health")
@blp.response(200, HealthSchema, description="API and database are healthy")
@blp.alt_response(503, schema=HealthSchema, description="Database unreachable")
def health():
    """Check API and database health (same answer as GET /health)."""
    body, status = health_body()
    return body, status


@blp.get("/status")
@blp.response(200, StatusSchema)
def status():
    """Detailed system status including all components."""
    database = "healthy" if database_ok() else "unhealthy"
    # This process's event listener: unhealthy while it is reconnecting to the database.
    websocket = "unhealthy" if hub.started and not hub.listening else "healthy"
    healthy = database == "healthy" and websocket == "healthy"
    return {
        "status": "operational" if healthy else "degraded",
        "version": VERSION,
        "uptime": uptime(),
        "components": {"database": database, "api": "healthy", "websocket": websocket},
        "websocket": {"connected_clients": connected_clients() if database == "healthy" else 0},
    }
