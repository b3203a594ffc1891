"""Agents: registry, detail, lightweight health, heartbeats from in- and out-of-process agents."""

from __future__ import annotations

from app.access.roles import Role
from app.agents import registry
from app.api.access import requires
from app.api.base import ApiBlueprint
from app.errors import InvalidInput
from app.schemas.agents import (
    AGENT_NAME,
    AgentEnvelopeSchema,
    AgentHealthSchema,
    AgentHeartbeatResultSchema,
    AgentListSchema,
    HeartbeatArgs,
)
from app.schemas.common import ErrorSchema

blp = ApiBlueprint("agents", __name__, url_prefix="/api/v1/agents", description="Trading agents")


def _valid_name(name: str) -> str:
    if AGENT_NAME.regex.match(name) is None:
        raise InvalidInput("invalid agent name format", details=AGENT_NAME.error, field="name")
    return name


@blp.get("")
@requires(Role.VIEWER)
@blp.response(200, AgentListSchema)
def list_agents():
    """Get status of all registered trading agents."""
    agents = registry.list_agents()
    return {"agents": agents, "count": len(agents)}


@blp.get("/<name:name>")
@requires(Role.VIEWER)
@blp.response(200, AgentEnvelopeSchema)
@blp.alt_response(404, schema=ErrorSchema, description="Agent not found")
def get_agent(name: str):
    """Get detailed information about a specific agent."""
    return {"agent": registry.get_agent(_valid_name(name))}


@blp.get("/<name:name>/status")
@requires(Role.VIEWER)
@blp.response(200, AgentHealthSchema)
@blp.alt_response(404, schema=ErrorSchema, description="Agent not found")
def agent_status(name: str):
    """Get health status of a specific agent (lightweight version)."""
    return registry.get_agent(_valid_name(name))


@blp.post("/<name:name>/heartbeat")
@requires(Role.TRADER, audited=False)
@blp.arguments(HeartbeatArgs, required=False)
@blp.response(200, AgentHeartbeatResultSchema, description="Heartbeat recorded")
@blp.alt_response(201, schema=AgentHeartbeatResultSchema, description="Agent registered")
@blp.alt_response(400, schema=ErrorSchema, description="Invalid name or body")
def heartbeat(args: dict, name: str):
    """Register an agent or refresh its status; metadata keys merge into the stored metadata."""
    agent, created = registry.record_heartbeat(registry.Heartbeat(name=_valid_name(name), **args))
    message = "Agent registered" if created else "Heartbeat recorded"
    return {"agent": agent, "message": message}, (201 if created else 200)
