"""What the runtime looks like from the database: the engine's leader, supervised processes."""

from __future__ import annotations

from app.db import db
from app.models import SupervisedProcess
from app.process_metrics import alive_roles
from app.statements import CompiledSelect

PROCESSES = CompiledSelect(lambda: SupervisedProcess.select().order_by(SupervisedProcess.name), {})


def engine_status(takeover_seconds: float = 10.0) -> dict:
    """The leading engine (host:pid), its epoch, and how fresh its liveness proof is."""
    row = db.execute_prepared(
        "SELECT holder, epoch, EXTRACT(EPOCH FROM now() - heartbeat_at) FROM engine_leader "
        "WHERE id = 1"
    ).fetchone()
    if row is None:
        return {"state": "none", "holder": None, "epoch": None, "heartbeat_age_seconds": None}
    holder, epoch, age = row
    state = "active" if age is not None and float(age) < takeover_seconds else "stale"
    return {
        "state": state,
        "holder": holder,
        "epoch": epoch,
        "heartbeat_age_seconds": round(float(age), 3),
    }


def engine_state() -> str:
    """active (a leader proves it is alive and has not stopped), standby (only standbys are
    alive) or none."""
    leader = engine_status()
    roles = alive_roles("worker")
    if leader["state"] == "active" and roles.get(leader["holder"]) != "stopped":
        return "active"
    return "standby" if "standby" in roles.values() else "none"


def supervised_processes() -> list[dict]:
    """Processes `python -m app run` supervises, with their restarts (empty elsewhere)."""
    return PROCESSES.rows({})
