"""Live events end to end: real gunicorn processes, real WebSocket clients, real NOTIFY."""

from __future__ import annotations

import re
import signal
import socket
import time
from decimal import Decimal

import pytest
from simple_websocket import Client
from simple_websocket import ConnectionError as HandshakeRefused

from app.db import db
from tests.factories import make_order, make_position, make_session, make_trade
from tests.live import (
    API_HEADERS,
    LiveClient,
    WebServer,
    connected_clients,
    http,
    live_client,
    raw_websocket,
    start_worker,
    wait_until,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture(scope="module")
def server(app, database_url):
    web = WebServer(database_url, workers=2)
    yield web
    web.stop()


@pytest.fixture
def client(server):
    with live_client(server.ws_url) as ws:
        yield ws


def api(server, method: str, path: str, **body):
    response = http.request(method, server.url(path), json=body or None, timeout=5)
    assert response.status_code < 300, response.text
    return response.json()


def assert_envelope(message: dict, message_type: str, keys: set[str]) -> dict:
    assert set(message) == {"type", "timestamp", "data"}
    assert message["type"] == message_type
    assert TIMESTAMP.match(message["timestamp"])
    assert keys <= set(message["data"]), set(message["data"])
    return message["data"]


def test_session_lifecycle_emits_system_status(server, client):
    started = api(server, "POST", "/api/v1/trade/start", symbol="BTC/USDT", initial_capital=1000)
    session_id = started["session_id"]
    data = assert_envelope(
        client.next_of("system_status", status="trading_started"),
        "system_status",
        {"status", "message", "metadata"},
    )
    assert data["metadata"]["session_id"] == session_id
    assert data["metadata"]["symbol"] == "BTC/USDT"
    assert data["metadata"]["mode"] == "PAPER"
    for action, status in (("pause", "paused"), ("resume", "resumed"), ("stop", "stopped")):
        api(server, "POST", f"/api/v1/trade/{action}", session_id=session_id)
        message = client.next_of("system_status", status=f"trading_{status}")
        assert message["data"]["metadata"]["session_id"] == session_id


def test_order_status_changes_emit_order_update(server, client):
    api(server, "POST", "/api/v1/trade/start", symbol="ETH/USDT", initial_capital=1000)
    order = api(
        server, "POST", "/api/v1/orders", symbol="ETH/USDT", side="BUY", type="LIMIT",
        quantity=0.5, price=3000,
    )["order"]  # fmt: skip
    data = assert_envelope(
        client.next_of("order_update", status="NEW"),
        "order_update",
        {
            "order_id",
            "symbol",
            "side",
            "type",
            "status",
            "quantity",
            "executed_quantity",
            "filled_at",
        },
    )
    assert data["order_id"] == order["id"]
    assert (data["side"], data["type"], data["quantity"]) == ("BUY", "LIMIT", 0.5)
    api(server, "DELETE", f"/api/v1/orders/{order['id']}")
    canceled = client.next_of("order_update", status="CANCELED")
    assert canceled["data"]["order_id"] == order["id"]


def test_fill_rows_emit_trade_and_order_update(server, client):
    session = make_session()
    order = make_order(session, quantity=Decimal("0.1"))
    client.next_of("order_update", order_id=str(order.id))
    with db.atomic():
        make_trade(order, price=Decimal("42000"), commission=Decimal("4.2"))
        order.status = "FILLED"
        order.executed_quantity = Decimal("0.1")
        order.filled_at = order.placed_at
        order.save()
    trade = assert_envelope(
        client.next_of("trade"),
        "trade",
        {
            "trade_id",
            "order_id",
            "symbol",
            "side",
            "price",
            "quantity",
            "commission",
            "executed_at",
        },
    )
    assert (trade["order_id"], trade["price"], trade["commission"]) == (str(order.id), 42000, 4.2)
    filled = client.next_of("order_update", status="FILLED")
    assert filled["data"]["executed_quantity"] == 0.1
    assert TIMESTAMP.match(filled["data"]["filled_at"])


def test_position_open_update_close_emit_position_update(server, client):
    position = make_position(make_session(), unrealized_pnl=Decimal("0"))
    opened = assert_envelope(
        client.next_of("position_update"),
        "position_update",
        {"position_id", "session_id", "symbol", "side", "entry_price", "quantity",
         "unrealized_pnl", "realized_pnl"},
    )  # fmt: skip
    assert opened["position_id"] == str(position.id)
    position.unrealized_pnl = Decimal("150.5")
    position.save()
    assert client.next_of("position_update")["data"]["unrealized_pnl"] == 150.5
    position.save()  # nothing a client sees changed: no event
    position.status = "CLOSED"
    position.exit_time = position.entry_time
    position.exit_price = Decimal("43000")
    position.save()
    closed = client.next_of("position_update")
    assert (closed["data"]["status"], closed["data"]["exit_price"]) == ("CLOSED", 43000)


def test_rejected_order_emits_error(server, client):
    order = make_order(status="REJECTED", error_message="Insufficient balance")
    error = assert_envelope(client.next_of("error"), "error", {"error", "details", "severity"})
    assert error["details"] == "Insufficient balance"
    assert error["severity"] == "high"
    assert error["metadata"]["order_id"] == str(order.id)


def test_agent_registration_and_status_change_emit_agent_status(server, client):
    api(server, "POST", "/api/v1/agents/technical-agent/heartbeat", metadata={"version": "1"})
    data = assert_envelope(
        client.next_of("agent_status"),
        "agent_status",
        {"name", "status", "last_seen_at", "is_healthy", "metadata"},
    )
    assert (data["name"], data["status"], data["is_healthy"]) == ("technical-agent", "active", True)
    api(server, "POST", "/api/v1/agents/technical-agent/heartbeat")  # no change: no event
    api(server, "POST", "/api/v1/agents/technical-agent/heartbeat", status="error")
    changed = client.next_of("agent_status")
    assert (changed["data"]["status"], changed["data"]["is_healthy"]) == ("error", False)


def test_recorded_decision_emits_decision(server, client):
    api(
        server, "POST", "/api/v1/decisions", agent_name="trend-agent", symbol="BTC/USDT",
        decision_type="signal", decision="BUY", confidence=0.8, model="m",
    )  # fmt: skip
    data = client.next_of("decision")["data"]
    assert (data["agent_name"], data["decision"], data["confidence"]) == ("trend-agent", "BUY", 0.8)


def test_config_change_emits_system_status(server, client):
    api(server, "PATCH", "/api/v1/config", max_positions=4)
    message = client.next_of("system_status", status="config_updated")
    assert message["data"]["metadata"]["updates"] == {"max_positions": 4}


def test_ping_gets_pong_and_bad_frames_get_errors_without_disconnect(server, client):
    client.ws.send("{not json")
    assert client.next_of("error")["data"]["error"] == "invalid message"
    client.send("dance")
    assert client.next_of("error")["data"]["error"] == "unknown message type"
    client.send("subscribe", {"types": ["nonsense"]})
    assert client.next_of("error")["data"]["error"] == "invalid subscription"
    client.send("ping")
    pong = client.next_of("pong")
    assert pong["data"] == {}
    assert TIMESTAMP.match(pong["timestamp"])


def test_oversized_client_frame_closes_with_1009(server, client):
    client.ws.send("x" * 513)
    assert client.wait_closed() == 1009


def test_subscription_narrows_and_unsubscribe_widens(server, client):
    client.send("subscribe", {"types": ["order_update"], "symbols": ["eth-usdt"]})
    ack = client.next_of("subscribed")
    assert ack["data"] == {"types": ["order_update"], "symbols": ["ETH/USDT"], "session_id": None}
    btc = make_session()
    eth = make_session(symbol="ETH/USDT")
    make_order(btc)
    wanted = make_order(eth)
    received = client.drain(quiet=1.0)
    assert [(m["type"], m["data"].get("order_id")) for m in received] == [
        ("order_update", str(wanted.id))
    ]
    client.send("subscribe", {"session_id": str(btc.id), "symbols": ["BTC/USDT"]})
    client.next_of("subscribed")
    make_order(eth)
    mine = make_order(btc)
    assert [m["data"]["order_id"] for m in client.drain(quiet=1.0)] == [str(mine.id)]
    client.send("unsubscribe")
    assert client.next_of("unsubscribed")["data"] == {
        "types": None,
        "symbols": None,
        "session_id": None,
    }
    make_session(symbol="SOL/USDT")
    assert client.next_of("system_status", status="trading_started")


def test_connected_clients_counts_every_process(server, database_url, app):
    other = WebServer(database_url, workers=1)
    try:
        clients = [LiveClient(server.ws_url) for _ in range(3)] + [LiveClient(other.ws_url)]
        wait_until(lambda: connected_clients(server) == 4)
        assert connected_clients(other) == 4
        for ws in clients[:2]:
            ws.close()
        wait_until(lambda: connected_clients(other) == 2)
        for ws in clients[2:]:
            ws.close()
    finally:
        other.stop()


def test_every_process_of_every_instance_receives_every_event(server, database_url, app):
    other = WebServer(database_url, workers=2)
    try:
        # Several clients per instance so that both workers of each instance hold some.
        clients = [LiveClient(server.ws_url) for _ in range(4)]
        clients += [LiveClient(other.ws_url) for _ in range(4)]
        wait_until(lambda: connected_clients(server) >= 8)
        holders = db.execute_sql("SELECT process_id FROM ws_presence WHERE clients > 0")
        assert len({row[0] for row in holders}) >= 3
        via_rest = api(other, "POST", "/api/v1/trade/start", symbol="BTC/USDT", initial_capital=5)
        via_engine = make_order(make_session(symbol="ETH/USDT"))
        for ws in clients:
            first = ws.next_of("system_status", status="trading_started")
            assert first["data"]["metadata"]["session_id"] == via_rest["session_id"]
            assert ws.next_of("order_update")["data"]["order_id"] == str(via_engine.id)
        for ws in clients:
            ws.close()
    finally:
        other.stop()


def test_slow_client_is_disconnected_and_others_receive_everything(app, database_url):
    web = WebServer(database_url, workers=1, WS_WRITE_TIMEOUT=2)
    try:
        slow = raw_websocket(web.port)
        with live_client(web.ws_url) as fast:
            wait_until(lambda: connected_clients(web) == 2)
            db.execute_sql(
                "INSERT INTO system_events (type, data) SELECT 'system_status', "
                "jsonb_build_object('status', 'load', 'message', repeat('x', 4000), 'n', n) "
                "FROM generate_series(1, 800) AS n"
            )
            numbers = []
            deadline = time.monotonic() + 60
            while len(numbers) < 800 and time.monotonic() < deadline:
                message = fast.next(timeout=10)
                if message["data"].get("status") == "load":
                    numbers.append(message["data"]["n"])
            assert numbers == list(range(1, 801))
            wait_until(lambda: connected_clients(web) == 1, timeout=15)
        slow.close()
    finally:
        web.stop()


def test_client_that_never_answers_pings_is_closed(app, database_url):
    web = WebServer(database_url, workers=1, WS_PING_INTERVAL=1, WS_PONG_TIMEOUT=2)
    try:
        silent = raw_websocket(web.port)
        with live_client(web.ws_url) as polite:
            silent.settimeout(10)
            received = b""
            while True:
                chunk = silent.recv(4096)
                if not chunk:
                    break
                received += chunk
            # A ping frame (0x89) arrived, then a close frame (0x88) with code 1008.
            assert b"\x89" in received
            close_at = received.index(b"\x88")
            assert int.from_bytes(received[close_at + 2 : close_at + 4], "big") == 1008
            # A client that answers pings (simple-websocket does) stays connected.
            time.sleep(2.5)
            polite.send("ping")
            assert polite.next_of("pong")
        silent.close()
    finally:
        web.stop()


def test_listener_reconnects_after_its_connection_is_killed(server, client):
    killed = wait_until(
        lambda: db.execute_sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN cryptofunk_%%' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    )
    assert killed >= 2  # one listener per worker process
    notice = client.next_of("system_status", status="events_reconnected", timeout=10)
    assert "re-read state" in notice["data"]["message"]
    order = make_order()
    assert client.next_of("order_update", order_id=str(order.id))["data"]["status"] == "NEW"


def test_websockets_hold_no_pooled_connection(app, database_url):
    web = WebServer(database_url, workers=1, DB_POOL_SIZE=2)
    try:
        clients = [LiveClient(web.ws_url) for _ in range(10)]
        for _ in range(5):
            assert http.get(web.url("/api/v1/orders"), timeout=5).status_code == 200
        for ws in clients:
            ws.close()
    finally:
        web.stop()


def test_graceful_shutdown_closes_sockets_with_1001(app, database_url):
    web = WebServer(database_url, workers=1)
    ws = LiveClient(web.ws_url)
    web.process.send_signal(signal.SIGTERM)
    assert ws.wait_closed() == 1001
    web.process.wait(timeout=15)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", web.port), timeout=1)


def test_engine_start_stop_and_standby_takeover_are_announced(server, client, database_url):
    active = start_worker(database_url)
    standby = start_worker(database_url)
    try:
        first = client.next_of("system_status", status="engine_started", timeout=15)
        assert first["data"]["message"] == "Trading engine is active"
        later = client.drain(quiet=1.5)
        # The standby stays quiet while it waits (the active engine's agents do report in).
        assert [m for m in later if m["data"].get("status") == "engine_started"] == []
        process = first["data"]["metadata"]["process"]
        leader, follower = (
            (active, standby) if process.endswith(f":{active.pid}") else (standby, active)
        )
        leader.kill()  # a crash: no goodbye, the advisory lock dies with its connection
        takeover = client.next_of("system_status", status="engine_started", timeout=15)
        assert takeover["data"]["metadata"]["process"].endswith(f":{follower.pid}")
        follower.send_signal(signal.SIGTERM)
        assert client.next_of("system_status", status="engine_stopped", timeout=15)
        assert follower.wait(timeout=15) == 0
    finally:
        for process in (active, standby):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_oversized_event_is_sent_compact_and_marked_truncated(server, client):
    api(
        server, "POST", "/api/v1/agents/chatty-agent/heartbeat",
        metadata={"notes": "x" * 9000, "version": "1"},
    )  # fmt: skip
    data = client.next_of("agent_status")["data"]
    assert data["truncated"] is True
    assert (data["name"], data["status"]) == ("chatty-agent", "active")
    assert "metadata" not in data


def test_a_foreign_origin_cannot_open_the_event_stream_but_listed_and_own_ones_can(
    app, database_url
):
    server = WebServer(database_url, CORS_ORIGINS="https://dashboard.example")
    try:
        with pytest.raises(HandshakeRefused):
            Client.connect(server.ws_url, headers={"Origin": "https://evil.example"})
        client = Client.connect(
            server.ws_url, headers={"Origin": "https://dashboard.example", **API_HEADERS}
        )
        client.close()
        # The server's own origin (a browser sends Host with the port, as this raw client does).
        raw_websocket(server.port, origin=server.base).close()
        refused = http.get(
            server.url("/api/v1/ws"),
            headers={
                "Origin": "https://evil.example", "Upgrade": "websocket", "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13",
            },
        )  # fmt: skip
        assert refused.status_code == 403
        assert refused.json()["error"] == "origin not allowed"
    finally:
        server.stop()


def test_cors_answers_only_listed_origins(settings):
    from dataclasses import replace

    from app import create_app

    client = create_app(
        replace(settings, cors_origins=("https://dashboard.example",))
    ).test_client()
    allowed = client.get("/api/v1/health", headers={"Origin": "https://dashboard.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://dashboard.example"
    foreign = client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers
    preflight = client.options(
        "/api/v1/orders",
        headers={"Origin": "https://dashboard.example", "Access-Control-Request-Method": "POST"},
    )
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
