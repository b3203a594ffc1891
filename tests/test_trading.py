"""Trading sessions: start/stop/pause/resume transitions, figures on stop, list and detail."""

from __future__ import annotations

import uuid
from dataclasses import replace
from decimal import Decimal

import pytest

from app import create_app
from app.models import Order, TradingSession
from tests.conftest import with_key
from tests.factories import make_order, make_position, make_session, make_trade


def start(client, **body):
    payload = {"symbol": "BTC/USDT", "initial_capital": 10000.00}
    payload.update(body)
    return client.post("/api/v1/trade/start", json=payload)


def test_start_returns_201_with_spec_body(client):
    response = start(client)
    assert response.status_code == 201
    body = response.json
    assert set(body) == {"message", "session_id", "symbol", "mode", "started_at"}
    assert body["message"] == "Trading started successfully"
    assert (body["symbol"], body["mode"]) == ("BTC/USDT", "PAPER")
    session = TradingSession.get_by_id(uuid.UUID(body["session_id"]))
    assert session.status == "RUNNING"
    assert session.initial_capital == Decimal("10000")


def test_second_start_for_same_symbol_and_mode_is_409_with_existing_id(client):
    first = start(client).json["session_id"]
    response = start(client, symbol="btc-usdt")
    assert response.status_code == 409
    assert response.json["error"] == "trading session already active"
    assert response.json["session_id"] == first
    assert start(client, symbol="ETH/USDT").status_code == 201


def test_start_after_stop_is_allowed(client):
    first = start(client).json["session_id"]
    client.post("/api/v1/trade/stop", json={"session_id": first})
    assert start(client).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"initial_capital": 0}, "initial_capital"),
        ({"initial_capital": -5}, "initial_capital"),
        ({"mode": "DEMO"}, "mode"),
        ({"symbol": "nonsense"}, "symbol"),
    ],
)
def test_start_validation(client, body, field):
    response = start(client, **body)
    assert response.status_code == 400
    assert response.json["field"] == field
    assert TradingSession.select().count() == 0


def test_live_mode_without_credentials_is_refused_not_downgraded(client):
    response = start(client, mode="live")
    assert response.status_code == 400
    assert response.json["error"] == "LIVE trading requires exchange credentials"
    assert TradingSession.select().count() == 0


def test_live_mode_with_keys_but_no_exchange_named_is_refused(settings, admin_key):
    app = create_app(replace(settings, exchange_api_key="k", exchange_api_secret="s"))
    client = with_key(app.test_client(), admin_key)
    client.patch("/api/v1/config", json={"trading_mode": "live"})
    response = start(client, mode="LIVE")
    assert response.status_code == 400
    assert response.json["error"] == "LIVE trading requires exchange credentials"
    assert "EXCHANGE_ID" in response.json["details"]
    assert TradingSession.select().count() == 0


def test_pause_and_resume_round_trip(client):
    session_id = start(client).json["session_id"]
    paused = client.post("/api/v1/trade/pause", json={"session_id": session_id})
    assert paused.status_code == 200
    assert paused.json["message"] == "Trading paused successfully"
    assert paused.json["symbol"] == "BTC/USDT"
    assert paused.json["status"] == "PAUSED"
    assert "resume" in paused.json["note"]
    # A paused session takes orders; the engine refuses only fills that add exposure.
    assert "still accepted" in paused.json["note"]
    assert "reduce or close" in paused.json["note"]
    resumed = client.post("/api/v1/trade/resume", json={"session_id": session_id})
    assert resumed.status_code == 200
    assert resumed.json["status"] == "RUNNING"


def test_impossible_transitions_are_400(client):
    session_id = start(client).json["session_id"]
    resume = client.post("/api/v1/trade/resume", json={"session_id": session_id})
    assert resume.status_code == 400
    assert resume.json["error"] == "trading session cannot be resumed"
    client.post("/api/v1/trade/pause", json={"session_id": session_id})
    again = client.post("/api/v1/trade/pause", json={"session_id": session_id})
    assert again.status_code == 400
    client.post("/api/v1/trade/stop", json={"session_id": session_id})
    for action in ("pause", "resume", "stop"):
        response = client.post(f"/api/v1/trade/{action}", json={"session_id": session_id})
        assert response.status_code == 400, action
        assert response.json["session_id"] == session_id


@pytest.mark.parametrize("action", ["pause", "resume", "stop"])
def test_unknown_session_is_404_and_bad_id_is_400(client, action):
    unknown = client.post(f"/api/v1/trade/{action}", json={"session_id": str(uuid.uuid4())})
    assert unknown.status_code == 404
    assert unknown.json["error"] == "trading session not found"
    bad = client.post(f"/api/v1/trade/{action}", json={"session_id": "42"})
    assert bad.status_code == 400
    assert bad.json == {"error": "invalid session_id format", "field": "session_id"}
    missing = client.post(f"/api/v1/trade/{action}", json={})
    assert missing.status_code == 400
    assert missing.json["field"] == "session_id"


def test_stop_with_final_capital_computes_figures_from_data(client):
    session = make_session()
    order = make_order(session, status="FILLED")
    for _ in range(3):
        make_trade(order)
    make_position(session, status="CLOSED", realized_pnl=Decimal("120.5"))
    make_position(session, status="CLOSED", realized_pnl=Decimal("-20"), symbol="BTC/USDT")
    make_position(session, status="CLOSED", realized_pnl=Decimal("300"))
    working = make_order(session, type="LIMIT", price=Decimal("40000"))
    response = client.post(
        "/api/v1/trade/stop", json={"session_id": str(session.id), "final_capital": 10500.00}
    )
    assert response.status_code == 200
    body = response.json
    assert body["message"] == "Trading stopped successfully"
    assert body["final_capital"] == 10500
    assert body["total_pnl"] == 500
    assert body["total_trades"] == 3
    assert (body["winning_trades"], body["losing_trades"]) == (2, 1)
    assert body["stopped_at"].endswith("Z")
    assert Order.get_by_id(working.id).status == "CANCELED"
    stored = TradingSession.get_by_id(session.id)
    assert stored.status == "STOPPED"
    assert stored.final_capital == Decimal("10500")


def test_stop_rejects_negative_final_capital(client):
    session = make_session()
    response = client.post(
        "/api/v1/trade/stop", json={"session_id": str(session.id), "final_capital": -1}
    )
    assert response.status_code == 400
    assert response.json["field"] == "final_capital"


def test_sessions_list_and_detail(client):
    running = make_session()
    stopped = make_session(symbol="ETH/USDT", status="STOPPED")
    listing = client.get("/api/v1/sessions").json
    assert listing["count"] == 2
    assert {s["id"] for s in listing["sessions"]} == {str(running.id), str(stopped.id)}
    only_stopped = client.get("/api/v1/sessions?status=stopped").json
    assert [s["id"] for s in only_stopped["sessions"]] == [str(stopped.id)]
    by_symbol = client.get("/api/v1/sessions?symbol=BTC-USDT&mode=paper").json
    assert [s["id"] for s in by_symbol["sessions"]] == [str(running.id)]
    detail = client.get(f"/api/v1/sessions/{running.id}").json["session"]
    assert set(detail) >= {
        "id", "mode", "symbol", "exchange", "started_at", "stopped_at", "initial_capital",
        "final_capital", "total_pnl", "total_trades", "winning_trades", "losing_trades",
        "max_drawdown", "sharpe_ratio", "created_at", "updated_at", "status",
    }  # fmt: skip
    assert client.get(f"/api/v1/sessions/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/v1/sessions/xyz").json["error"] == "invalid session_id format"


def test_start_without_initial_capital_takes_the_configured_one(client):
    client.patch("/api/v1/config", json={"initial_capital": 2500})
    response = client.post("/api/v1/trade/start", json={"symbol": "BTC/USDT"})
    assert response.status_code == 201
    session = TradingSession.get_by_id(response.json["session_id"])
    assert session.initial_capital == 2500
    assert session.cash == 2500


def test_live_is_switched_off_while_trading_mode_is_paper(settings, admin_key):
    from dataclasses import replace

    from app import create_app

    configured = replace(
        settings, exchange_id="binance", exchange_api_key="k", exchange_api_secret="s"
    )
    client = with_key(create_app(configured).test_client(), admin_key)
    response = client.post("/api/v1/trade/start", json={"symbol": "BTC/USDT", "mode": "LIVE"})
    assert response.status_code == 400
    assert response.json["error"] == "LIVE trading is switched off"
    assert response.json["field"] == "mode"
