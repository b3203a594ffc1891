"""Access control on real gunicorn processes: WebSocket credentials and slots, revocation on
every worker, gunicorn's own errors in JSON, and secrets that never leak."""

from __future__ import annotations

import json
import socket

import pytest
import requests
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused

from app.db import db
from tests.factories import make_key
from tests.live import WebServer, http, live_client, wait_until

PLANTED = {
    "LLM_API_KEY": "sk-planted-llm-secret-0001",
    "EXCHANGE_API_KEY": "planted-exchange-key-0002",
    "EXCHANGE_API_SECRET": "planted-exchange-secret-0003",
    "EXCHANGE_API_PASSWORD": "planted-exchange-passphrase-0006",
    "JWT_SECRET": "planted-jwt-secret-0004-planted-jwt-secret",
    "CRYPTOFUNK_ADMIN_KEY": "planted-admin-key-0005-planted-admin-key",
}


@pytest.fixture
def server(database_url):
    web = WebServer(database_url, workers=2, GUNICORN_ACCESS_LOG="-")
    yield web
    web.stop()


def handshake_status(url: str, headers: dict | None = None) -> int:
    try:
        Client.connect(url, headers=headers or {}).close()
    except HandshakeRefused as refused:
        return refused.status_code
    return 101


def token_for(server, key: str) -> str:
    response = requests.post(server.url("/api/v1/auth/token"), headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_websocket_takes_a_header_credential_or_a_token_never_a_key_in_the_url(server):
    key = make_key("viewer", name="wall")
    assert handshake_status(server.ws_url) == 401
    assert handshake_status(server.ws_url, {"X-API-Key": "nope"}) == 401
    assert handshake_status(f"{server.ws_url}?token={key}") == 401
    token = token_for(server, key)
    with live_client(f"{server.ws_url}?token={token}", headers={}) as client:
        client.send("ping")
        assert client.next_of("pong")
    with live_client(server.ws_url, headers={"Authorization": f"Bearer {token}"}) as client:
        client.send("ping")
        assert client.next_of("pong")
    assert handshake_status(server.ws_url, {"X-API-Key": key, "Origin": "https://evil.example"}) \
        == 403  # fmt: skip
    # Neither the key nor the token reaches the access log; the request does. (gunicorn logs
    # no line for an upgraded connection, so the refused one shows the redaction.)
    log = wait_until(lambda: "/api/v1/ws?token=" in (text := server.log()) and text)
    assert token not in log and key not in log
    assert "/api/v1/ws?token=[redacted]" in log


def test_websocket_connections_per_key_are_limited_across_workers(server):
    key = make_key("viewer", name="tabs", ws_connections=2)
    headers = {"X-API-Key": key}
    first, second = Client.connect(server.ws_url, headers=headers), None
    try:
        second = Client.connect(server.ws_url, headers=headers)
        refused = requests.get(
            server.url("/api/v1/ws"),
            headers={**headers, "Upgrade": "websocket", "Connection": "Upgrade",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                     "Sec-WebSocket-Version": "13"},
        )  # fmt: skip
        assert refused.status_code == 429
        assert refused.json()["error"] == "too many WebSocket connections"
        assert "holds 2 of its 2" in refused.json()["details"]
        me = requests.get(server.url("/api/v1/auth/me"), headers=headers).json()
        assert (me["limits"]["ws_connections"], me["ws_connections_open"]) == (2, 2)
        second.close()
        wait_until(lambda: handshake_status(server.ws_url, headers) == 101)
        # The default for keys without their own limit is WS_CONNECTIONS_PER_KEY (5).
        other = make_key("viewer", name="default-tabs")
        clients = [Client.connect(server.ws_url, headers={"X-API-Key": other}) for _ in range(5)]
        assert handshake_status(server.ws_url, {"X-API-Key": other}) == 429
        for client in clients:
            client.close()
    finally:
        first.close()


def test_a_revoked_key_stops_working_at_once_on_every_worker(server):
    key = make_key("viewer", name="leaving")
    for _ in range(8):  # new connections: both workers see (and cache) the key
        assert requests.get(server.url("/api/v1/orders"), headers={"X-API-Key": key}).ok
    assert http.delete(server.url("/api/v1/keys/leaving")).status_code == 200
    statuses = {
        requests.get(server.url("/api/v1/orders"), headers={"X-API-Key": key}).status_code
        for _ in range(8)
    }
    assert statuses == {401}


def raw_request(port: int, payload: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_gunicorns_own_errors_are_json_too(server):
    long_line = b"GET /api/v1/orders?token=abc&x=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    status, headers, body = raw_request(server.port, long_line)
    assert status == 414
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"] == "uri too long"
    huge_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
    status, headers, body = raw_request(server.port, huge_header)
    assert status == 431
    assert json.loads(body)["error"] == "request header fields too large"
    status, _, body = raw_request(server.port, b"NOT A REQUEST\r\n\r\n")
    assert status == 400 and json.loads(body)["error"] == "bad request"


def test_planted_secrets_appear_in_no_log_event_audit_row_or_response(database_url):
    llm = {"LLM_BASE_URL": "http://127.0.0.1:9/v1", "LLM_MODEL": "planted-model"}
    web = WebServer(database_url, workers=1, GUNICORN_ACCESS_LOG="-", LOG_LEVEL="debug",
                    **llm, **PLANTED)  # fmt: skip
    try:
        admin = {"X-API-Key": PLANTED["CRYPTOFUNK_ADMIN_KEY"]}
        created = requests.post(web.url("/api/v1/keys"), headers=admin,
                                json={"name": "planted", "role": "trader"})  # fmt: skip
        issued = created.json()["key"]
        token = token_for(web, issued)
        with live_client(f"{web.ws_url}?token={token}", headers={}) as client:
            client.send("ping")
            client.next_of("pong")
        trader = {"Authorization": f"Bearer {token}"}
        requests.post(web.url("/api/v1/trade/start"), headers=trader,
                      json={"symbol": "BTC/USDT", "initial_capital": 100})  # fmt: skip
        requests.get(web.url("/api/v1/orders"), headers={"X-API-Key": PLANTED["LLM_API_KEY"]})
        requests.patch(web.url("/api/v1/config"), headers=admin, json={"max_positions": 2})
        requests.post(web.url("/api/v1/decisions"), headers=admin,
                      json={"api_key": PLANTED["EXCHANGE_API_SECRET"], "token": token})  # fmt: skip
        answers = {
            path: requests.get(web.url(path), headers=admin).text
            for path in ("/api/v1/config", "/api/v1/status", "/metrics", "/api/v1/audit",
                         "/api/v1/keys", "/api/v1/auth/me")
        }  # fmt: skip
        events = str(db.execute_sql("SELECT data FROM system_events").fetchall())
        audit = str(db.execute_sql("SELECT * FROM audit_log").fetchall())
        assert "planted" in audit  # the key's name is recorded, not the key
        places = {"log": web.log(), "events": events, "audit": audit, **answers}
        for secret in (*PLANTED.values(), issued, token):
            leaks = [place for place, text in places.items() if secret in text]
            assert leaks == [], f"{secret[:12]}... leaked into {leaks}"
    finally:
        web.stop()
