"""API info, health, status, metrics, OpenAPI and the JSON error envelope for HTTP errors."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from app import create_app
from app.db import init_database
from tests.conftest import with_key
from tests.factories import make_order, make_session

UPTIME = re.compile(r"^(\d+h)?(\d+m)?\d+s$")


def test_root_returns_api_information(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.json == {
        "name": "CryptoFunk Trading API",
        "version": "1.0.0",
        "status": "running",
    }


@pytest.mark.parametrize("path", ["/health", "/api/v1/health"])
def test_health_reports_healthy_with_uptime(client, path):
    response = client.get(path)
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "healthy"
    assert body["version"] == "1.0.0"
    assert UPTIME.match(body["uptime"])


def test_health_is_503_json_when_database_unreachable(settings, database_url, admin_key):
    unreachable = "postgresql://nobody@127.0.0.1:1/none"
    guarded = with_key(create_app(replace(settings, database_url=unreachable)).test_client(),
                       admin_key)  # fmt: skip
    # With access control on, a credential cannot be checked without the database.
    assert guarded.get("/api/v1/status").status_code == 503
    assert guarded.get("/api/v1/status").json["error"] == "database unavailable"
    broken = create_app(
        replace(settings, database_url=unreachable, auth_disabled=True, rate_limit_enabled=False)
    )
    try:
        for path in ("/health", "/api/v1/health"):
            response = broken.test_client().get(path)
            assert response.status_code == 503
            assert response.json == {
                "status": "unhealthy",
                "error": "database connection failed",
                "version": "1.0.0",
            }
        status = broken.test_client().get("/api/v1/status")
        assert status.json["components"]["database"] == "unhealthy"
        assert status.json["status"] == "degraded"
        orders = broken.test_client().get("/api/v1/orders")
        assert orders.status_code == 503
        assert orders.json["error"] == "database unavailable"
    finally:
        init_database(database_url)


def test_status_lists_components_and_websocket_clients(client):
    body = client.get("/api/v1/status").json
    assert body["status"] == "operational"
    assert body["components"] == {"database": "healthy", "api": "healthy", "websocket": "healthy"}
    assert body["websocket"] == {"connected_clients": 0}
    assert UPTIME.match(body["uptime"])


def test_status_sums_fresh_presence_rows_only(client):
    from app.db import db

    db.execute_sql(
        "INSERT INTO ws_presence (process_id, clients, seen_at) VALUES "
        "('a', 3, now()), ('b', 2, now()), ('dead', 7, now() - interval '5 minutes')"
    )
    assert client.get("/api/v1/status").json["websocket"] == {"connected_clients": 5}


def test_metrics_exposes_prometheus_text_with_trading_gauges(client):
    session = make_session()
    make_order(session)
    make_order(session, status="CANCELED")
    client.get("/api/v1/orders")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert 'cryptofunk_orders{status="NEW"} 1.0' in text
    assert 'cryptofunk_orders{status="CANCELED"} 1.0' in text
    assert 'cryptofunk_sessions{status="RUNNING"} 1.0' in text
    assert "cryptofunk_database_up 1.0" in text
    assert (
        'cryptofunk_http_requests_total{endpoint="/api/v1/orders",method="GET",status="200"}'
        in text
    )


def test_openapi_document_covers_every_route_with_schemas(client, app):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        # Docs pages, the dashboard's files and the WebSocket upgrade are not REST operations.
        if rule.endpoint.startswith(("api-docs", "dashboard.")) or rule.rule == "/api/v1/ws":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} missing from OpenAPI"
    create = spec["paths"]["/api/v1/orders"]["post"]
    assert "201" in create["responses"]
    assert "requestBody" in create
    assert "Error" in spec["components"]["schemas"]
    assert "/api/v1/ws" in spec["info"]["description"]


def test_interactive_docs_page_is_served(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert "swagger" in response.get_data(as_text=True).lower()


def test_unknown_route_is_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json == {
        "error": "resource not found",
        "details": "no route for GET /api/v1/nothing-here",
    }


def test_wrong_method_is_json_405_with_allow_header(client):
    response = client.put("/api/v1/orders")
    assert response.status_code == 405
    assert response.json["error"] == "method not allowed"
    assert "POST" in response.headers["Allow"]


def test_oversized_body_is_json_413(client):
    response = client.post(
        "/api/v1/orders", data="{" + " " * 70_000 + "}", content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json["error"] == "request body too large"


def test_non_json_body_is_json_415(client):
    response = client.post("/api/v1/trade/start", data="symbol=BTC", content_type="text/plain")
    assert response.status_code == 415
    assert response.json["error"] == "unsupported media type"


def test_unexpected_exception_is_json_500_without_traceback(settings, admin_key):
    app = create_app(settings)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = with_key(app.test_client(), admin_key).get("/boom")
    assert response.status_code == 500
    assert response.json == {"error": "internal server error"}
    assert "secret" not in response.get_data(as_text=True)


def test_responses_carry_security_headers(client):
    response = client.get("/api/v1/health")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    docs = client.get("/api/docs")
    assert "frame-ancestors 'none'" in docs.headers["Content-Security-Policy"]


def test_database_refusals_do_not_echo_postgres_text(client):
    from app.api.errors import render_data_error

    with client.application.test_request_context("/"):
        import peewee

        response = render_data_error(
            peewee.IntegrityError('duplicate key value violates unique constraint "secret_idx"')
        )
    assert response.status_code == 409
    assert "secret_idx" not in response.get_data(as_text=True)


def test_the_openapi_document_tells_the_truth_about_errors_and_nullable_fields(client):
    doc = client.get("/api/v1/openapi.json").json
    schemas = doc["components"]["schemas"]
    # Error bodies carry context keys such as session_id.
    assert schemas["Error"]["additionalProperties"] is True
    assert schemas["Decision"]["properties"]["session_id"]["nullable"] is True
    assert schemas["DecisionDetail"]["properties"]["prompt_embedding"]["nullable"] is True
    heartbeat = doc["paths"]["/api/v1/agents/{name}/heartbeat"]["post"]["requestBody"]
    assert heartbeat["required"] is False
    assert client.post("/api/v1/agents/bodyless-agent/heartbeat").status_code == 201
