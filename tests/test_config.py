"""Runtime config: sanitised document, validated atomic updates stored in PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app import create_app
from app.models import ConfigOverride
from app.settings import Settings
from tests.conftest import with_key


def test_get_config_has_every_section(client):
    config = client.get("/api/v1/config").json["config"]
    assert set(config) == {"app", "trading", "risk", "llm", "exchange", "agents", "llm_prices"}
    assert config["exchange"]["slippage_bps"] == 5
    assert config["app"]["name"] == "cryptofunk"
    assert config["trading"]["symbols"] == ["BTC/USDT", "ETH/USDT"]
    assert set(config["risk"]) == {
        "max_position_size", "max_daily_loss", "max_drawdown", "default_stop_loss",
        "default_take_profit", "llm_approval_required", "min_confidence",
    }  # fmt: skip
    assert set(config["llm"]) == {
        "gateway", "primary_model", "fallback_model", "temperature", "max_tokens", "enable_caching"
    }  # fmt: skip


def test_config_never_shows_secrets(settings, admin_key):
    secret_settings = replace(
        settings,
        llm_base_url="http://user:pw@llm.local/v1",
        llm_api_key="sk-super-secret",
        llm_model="gpt-x",
        exchange_api_key="exchange-key",
        exchange_api_secret="exchange-secret",
    )
    client = with_key(create_app(secret_settings).test_client(), admin_key)
    text = client.get("/api/v1/config").get_data(as_text=True)
    for secret in ("sk-super-secret", "exchange-key", "exchange-secret", "pw@", "llm.local"):
        assert secret not in text
    assert '"primary_model":"gpt-x"' in text
    assert "sk-super-secret" not in repr(secret_settings)


def test_patch_updates_every_updatable_field_and_persists(client):
    updates = {
        "trading_mode": "PAPER",
        "initial_capital": 25000,
        "max_positions": 5,
        "max_position_size": 0.15,
        "max_daily_loss": 0.04,
        "max_drawdown": 0.1,
        "default_stop_loss": 0.03,
        "default_take_profit": 0.06,
        "min_confidence": 0.75,
        "llm_approval_required": False,
        "llm_temperature": 0.8,
        "llm_max_tokens": 4000,
    }
    response = client.patch("/api/v1/config", json=updates)
    assert response.status_code == 200
    assert response.json["message"] == "Configuration updated successfully"
    assert response.json["updates"] == {**updates, "trading_mode": "paper"}
    config = client.get("/api/v1/config").json["config"]
    assert config["trading"]["mode"] == "paper"
    assert config["trading"]["initial_capital"] == 25000
    assert config["trading"]["max_positions"] == 5
    assert config["risk"]["max_position_size"] == 0.15
    assert config["risk"]["llm_approval_required"] is False
    assert config["llm"]["temperature"] == 0.8
    assert config["llm"]["max_tokens"] == 4000
    assert ConfigOverride.select().count() == len(updates)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_position_size": 0}, "max_position_size"),
        ({"max_position_size": 1.01}, "max_position_size"),
        ({"max_daily_loss": -0.1}, "max_daily_loss"),
        ({"min_confidence": 1.5}, "min_confidence"),
        ({"llm_temperature": 2.5}, "llm_temperature"),
        ({"llm_max_tokens": 0}, "llm_max_tokens"),
        ({"llm_max_tokens": 10.5}, "llm_max_tokens"),
        ({"max_positions": "3"}, "max_positions"),
        ({"trading_mode": "yolo"}, "trading_mode"),
        ({"llm_approval_required": "yes"}, "llm_approval_required"),
        ({"api_key": "x"}, "api_key"),
    ],
)
def test_patch_rejects_invalid_values_naming_the_field(client, body, field):
    response = client.patch("/api/v1/config", json=body)
    assert response.status_code == 400
    assert response.json["field"] == field


def test_patch_is_all_or_nothing(client):
    response = client.patch("/api/v1/config", json={"max_position_size": 0.1, "min_confidence": 7})
    assert response.status_code == 400
    assert ConfigOverride.select().count() == 0
    assert client.get("/api/v1/config").json["config"]["risk"]["max_position_size"] == 0.2


def test_patch_with_nothing_to_update_is_400(client):
    response = client.patch("/api/v1/config", json={})
    assert response.status_code == 400
    assert "max_position_size" in response.json["details"]


def test_an_llm_endpoint_needs_a_model_and_feeds_are_checked():
    with pytest.raises(SystemExit, match="LLM_MODEL"):
        Settings.from_env(llm_base_url="http://127.0.0.1:9/v1", llm_model=None)
    with pytest.raises(SystemExit, match="MARKET_FEED"):
        Settings.from_env(market_feed="telepathy")
