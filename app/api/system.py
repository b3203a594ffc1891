"""API info, liveness/health, component status and Prometheus metrics."""

from __future__ import annotations

import time

from flask import Response

from app.access.roles import Role
from app.api.access import requires, unlimited_public
from app.api.base import ApiBlueprint, settings
from app.db import CONNECTION_ERRORS, PoolExhausted, db, probe
from app.metrics import render
from app.realtime.hub import hub
from app.realtime.presence import connected_clients
from app.runtime_status import engine_state, engine_status, supervised_processes
from app.schemas.system import HealthSchema, InfoSchema, ReadySchema, StatusSchema
from app.settings import VERSION
from app.trading.live import account_status

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


HEALTH_TIMEOUT_SECONDS = 0.7


def health_body() -> tuple[dict, int]:
    """The probe: 503 only when the database cannot be reached, answered within a second.

    An exhausted pool is reported beside a 200: restarting a busy process would not help it.
    """
    if probe(settings().database_url, HEALTH_TIMEOUT_SECONDS):
        pool = "exhausted" if db.exhausted else "ok"
        return {"status": "healthy", "version": VERSION, "uptime": uptime(), "pool": pool}, 200
    return {"status": "unhealthy", "error": "database connection failed", "version": VERSION}, 503


@root.get("/")
@requires(None)
@root.response(200, InfoSchema)
def info():
    """Get API information."""
    return {"name": "CryptoFunk Trading API", "version": VERSION, "status": "running"}


@root.get("/health")
@unlimited_public
@root.response(200, HealthSchema, description="API and database are healthy")
@root.alt_response(503, schema=HealthSchema, description="Database unreachable")
def health_root():
    """Check API and database health (liveness/readiness probe)."""
    return health_body()


@root.get("/ready")
@unlimited_public
@root.response(200, ReadySchema, description="Ready for traffic")
@root.alt_response(503, schema=ReadySchema, description="Database unreachable or listener down")
def ready():
    """Readiness: the database answers and this process's event listener is up. The engine's
    state is reported beside it and never makes the web unready."""
    database = "up" if probe(settings().database_url, HEALTH_TIMEOUT_SECONDS) else "down"
    listener = "up" if hub.started and hub.listening else "down"
    engine = "unknown"
    if database == "up":
        try:
            engine = engine_state()
        except (*CONNECTION_ERRORS, PoolExhausted):
            db.discard_broken()
    ok = database == "up" and listener == "up"
    body = {"status": "ready" if ok else "not_ready", "version": VERSION, "database": database,
            "listener": listener, "engine": engine}  # fmt: skip
    return body, 200 if ok else 503


@root.get("/metrics")
@requires(Role.VIEWER)
@root.doc(
    responses={"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}
)
def metrics():
    """Prometheus metrics: HTTP requests, and orders/sessions/positions/agents by status."""
    payload, content_type = render()
    return Response(payload, mimetype=content_type.split(";")[0], content_type=content_type)


@blp.get("/health")
@unlimited_public
@blp.response(200, HealthSchema, description="API and database are healthy")
@blp.alt_response(503, schema=HealthSchema, description="Database unreachable")
def health():
    """Check API and database health (same answer as GET /health)."""
    body, status = health_body()
    return body, status


@blp.get("/status")
@requires(Role.VIEWER)
@blp.response(200, StatusSchema)
def status():
    """Detailed system status including all components."""
    body = {"version": VERSION, "uptime": uptime()}
    try:
        body["websocket"] = {"connected_clients": connected_clients()}
        body["engine"] = engine_status()
        body["processes"] = supervised_processes()
        live = settings().live_exchange
        body["live_account"] = account_status(live, settings().exchange_sandbox) if live else None
        database = "healthy"
    except (*CONNECTION_ERRORS, PoolExhausted):
        db.discard_broken()
        database = (
            "healthy" if probe(settings().database_url, HEALTH_TIMEOUT_SECONDS) else ("unhealthy")
        )
        body["websocket"] = {"connected_clients": len(hub.clients)}
    # This process's event listener: unhealthy while it is reconnecting to the database.
    websocket = "unhealthy" if hub.started and not hub.listening else "healthy"
    healthy = database == "healthy" and websocket == "healthy"
    return {
        "status": "operational" if healthy else "degraded",
        **body,
        "components": {"database": database, "api": "healthy", "websocket": websocket},
    }
