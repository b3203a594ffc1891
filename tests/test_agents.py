"""Agents: list, detail, lightweight status, heartbeat registration and health."""

from __future__ import annotations

import json
import select
import time
from datetime import timedelta

import psycopg2

from app.db import connect_kwargs
from app.models import Agent, utcnow
from tests.factories import make_agent


def test_list_agents_with_health(client):
    make_agent("technical-agent")
    make_agent("trend-agent", metadata={"version": "1.0.0", "type": "strategy"})
    make_agent("stale-agent", last_seen_at=utcnow() - timedelta(minutes=10))
    body = client.get("/api/v1/agents").json
    assert body["count"] == 3
    by_name = {agent["name"]: agent for agent in body["agents"]}
    assert set(by_name["trend-agent"]) >= {
        "name",
        "status",
        "last_seen_at",
        "is_healthy",
        "metadata",
    }
    assert by_name["trend-agent"]["metadata"] == {"version": "1.0.0", "type": "strategy"}
    assert by_name["technical-agent"]["is_healthy"] is True
    assert by_name["stale-agent"]["is_healthy"] is False


def test_agent_in_error_is_unhealthy(client):
    make_agent("risk-agent", status="error")
    assert client.get("/api/v1/agents/risk-agent").json["agent"]["is_healthy"] is False


def test_agent_detail_and_status(client):
    make_agent("technical-agent", metadata={"version": "1.0.0", "signals_generated": 42})
    detail = client.get("/api/v1/agents/technical-agent")
    assert detail.status_code == 200
    assert detail.json["agent"]["metadata"]["signals_generated"] == 42
    status = client.get("/api/v1/agents/technical-agent/status")
    assert status.status_code == 200
    assert set(status.json) == {"name", "status", "last_seen_at", "healthy"}
    assert status.json["healthy"] is True


def test_unknown_agent_is_404(client):
    for path in ("/api/v1/agents/ghost", "/api/v1/agents/ghost/status"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.json == {"error": "agent not found", "name": "ghost"}


def test_heartbeat_registers_then_refreshes_and_merges_metadata(client):
    first = client.post(
        "/api/v1/agents/sentiment-agent/heartbeat",
        json={"metadata": {"version": "0.1", "type": "analysis"}, "heartbeat_interval_seconds": 10},
    )
    assert first.status_code == 201
    assert first.json["message"] == "Agent registered"
    assert first.json["agent"]["heartbeat_interval_seconds"] == 10
    seen = Agent.get_by_id("sentiment-agent").last_seen_at
    second = client.post(
        "/api/v1/agents/sentiment-agent/heartbeat",
        json={"status": "ERROR", "metadata": {"version": "0.2", "score": 0.75}},
    )
    assert second.status_code == 200
    assert second.json["message"] == "Heartbeat recorded"
    agent = second.json["agent"]
    assert agent["status"] == "error"
    assert agent["metadata"] == {"version": "0.2", "type": "analysis", "score": 0.75}
    assert agent["heartbeat_interval_seconds"] == 10
    assert Agent.get_by_id("sentiment-agent").last_seen_at >= seen


def test_heartbeat_without_body_is_accepted(client):
    response = client.post("/api/v1/agents/minimal/heartbeat")
    assert response.status_code == 201
    assert response.json["agent"]["status"] == "active"


def test_heartbeat_validation(client):
    bad_status = client.post("/api/v1/agents/a/heartbeat", json={"status": "sleeping"})
    assert bad_status.status_code == 400
    assert bad_status.json["field"] == "status"
    bad_meta = client.post("/api/v1/agents/a/heartbeat", json={"metadata": [1]})
    assert bad_meta.json["field"] == "metadata"
    bad_interval = client.post("/api/v1/agents/a/heartbeat", json={"heartbeat_interval_seconds": 0})
    assert bad_interval.json["field"] == "heartbeat_interval_seconds"
    bad_name = client.post("/api/v1/agents/-bad name/heartbeat", json={})
    assert bad_name.status_code == 400
    assert bad_name.json["error"] == "invalid agent name format"
    assert Agent.select().count() == 0


def test_rest_and_the_live_event_agree_on_health(client, database_url):
    listener = psycopg2.connect(**connect_kwargs(database_url))
    listener.autocommit = True
    try:
        with listener.cursor() as cursor:
            cursor.execute("LISTEN cryptofunk_events")
        make_agent("stale-agent", last_seen_at=utcnow() - timedelta(minutes=10))
        deadline = time.monotonic() + 5
        events = []
        while not events and time.monotonic() < deadline:
            select.select([listener], [], [], 0.5)
            listener.poll()
            events = [json.loads(n.payload) for n in listener.notifies]
        (event,) = [e for e in events if e["type"] == "agent_status"]
        rest = client.get("/api/v1/agents/stale-agent").json["agent"]
        assert event["data"]["status"] == rest["status"] == "active"
        assert event["data"]["is_healthy"] is rest["is_healthy"] is False
    finally:
        listener.close()
