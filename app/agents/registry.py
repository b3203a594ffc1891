"""Agent registry: heartbeats, status, and health derived from heartbeat freshness."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import EXCLUDED, SQL, fn

from app.errors import NotFound
from app.models import Agent, utcnow


@dataclass(frozen=True)
class Heartbeat:
    name: str
    status: str = "active"
    metadata: dict | None = None
    heartbeat_interval_seconds: int | None = None


def with_health(query):
    """Add ``is_healthy_now``, computed by the one SQL definition (migration 0006) that the
    agent_status event uses too."""
    healthy = fn.cryptofunk_agent_is_healthy(
        Agent.status, Agent.last_seen_at, Agent.heartbeat_interval_seconds
    ).coerce(False)  # a boolean, not converted like the first argument (a text column)
    return query.select_extend(healthy.alias("is_healthy_now"))


def list_agents() -> list[Agent]:
    """Every registered agent, by name."""
    return list(with_health(Agent.select()).order_by(Agent.name))


def get_agent(name: str) -> Agent:
    """The agent or 404 ``agent not found``."""
    agent = with_health(Agent.select()).where(Agent.name == name).first()
    if agent is None:
        raise NotFound("agent not found", name=name)
    return agent


def record_heartbeat(beat: Heartbeat) -> tuple[Agent, bool]:
    """Register or refresh an agent; metadata keys merge into what is stored.

    Returns the agent and whether it was created by this heartbeat.
    """
    now = utcnow()
    metadata = beat.metadata or {}
    insert = {
        Agent.name: beat.name,
        Agent.status: beat.status,
        Agent.last_seen_at: now,
        Agent.metadata: metadata,
        Agent.created_at: now,
        Agent.updated_at: now,
    }
    update = {
        Agent.status: EXCLUDED.status,
        Agent.last_seen_at: EXCLUDED.last_seen_at,
        Agent.metadata: Agent.metadata.concat(EXCLUDED.metadata),
        Agent.updated_at: EXCLUDED.updated_at,
    }
    if beat.heartbeat_interval_seconds is not None:
        insert[Agent.heartbeat_interval_seconds] = beat.heartbeat_interval_seconds
        update[Agent.heartbeat_interval_seconds] = EXCLUDED.heartbeat_interval_seconds
    # xmax = 0 only on a freshly inserted row version: how PostgreSQL tells insert from update.
    rows = (
        Agent.insert(insert)
        .on_conflict(conflict_target=[Agent.name], update=update)
        .returning(SQL("(xmax = 0)").alias("inserted"))
        .dicts()
        .execute()
    )
    created = bool(next(iter(rows))["inserted"])
    return get_agent(beat.name), created


def mark_silent_agents_inactive() -> int:
    """Agents that missed three heartbeats become inactive (each change is an agent_status)."""
    return (
        Agent.update(status="inactive", updated_at=utcnow())
        .where(
            Agent.status == "active",
            Agent.last_seen_at
            < fn.now() - fn.make_interval(0, 0, 0, 0, 0, 0, Agent.heartbeat_interval_seconds * 3),
        )
        .execute()
    )
