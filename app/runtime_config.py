"""Runtime configuration: shipped defaults overlaid with overrides stored in PostgreSQL.

Overrides live in the database so every web process and the engine read the same values and
they survive restarts. Secrets (API keys, URLs that may embed them) are never part of it.
"""

from __future__ import annotations

import copy
from decimal import Decimal

from peewee import EXCLUDED

from app.db import db
from app.errors import InvalidInput
from app.events import publish_status
from app.models import ConfigOverride, utcnow
from app.settings import VERSION, Settings, load_defaults

# Updatable field → (section, key) in the config document.
UPDATABLE_FIELDS: dict[str, tuple[str, str]] = {
    "trading_mode": ("trading", "mode"),
    "initial_capital": ("trading", "initial_capital"),
    "max_positions": ("trading", "max_positions"),
    "max_position_size": ("risk", "max_position_size"),
    "max_daily_loss": ("risk", "max_daily_loss"),
    "max_drawdown": ("risk", "max_drawdown"),
    "default_stop_loss": ("risk", "default_stop_loss"),
    "default_take_profit": ("risk", "default_take_profit"),
    "min_confidence": ("risk", "min_confidence"),
    "llm_approval_required": ("risk", "llm_approval_required"),
    "llm_temperature": ("llm", "temperature"),
    "llm_max_tokens": ("llm", "max_tokens"),
    "liquidity_participation": ("exchange", "liquidity_participation"),
    "max_price_age_seconds": ("exchange", "max_price_age_seconds"),
}

_DEFAULTS = load_defaults()


def _jsonable(value):
    return float(value) if isinstance(value, Decimal) else value


def overrides() -> dict[str, object]:
    """Every stored override, keyed by updatable field name."""
    return {row.key: row.value for row in ConfigOverride.select()}


def trading_rules() -> dict:
    """Defaults overlaid with the stored overrides: every section, no process settings."""
    config = copy.deepcopy(_DEFAULTS)
    for name, value in overrides().items():
        section, key = UPDATABLE_FIELDS[name]
        config[section][key] = value
    return config


def current_config(settings: Settings) -> dict:
    """The effective, sanitised configuration document."""
    config = trading_rules()
    config["app"].update(
        {"version": VERSION, "environment": settings.environment, "log_level": settings.log_level}
    )
    llm = config["llm"]
    llm["gateway"] = "openai-compatible" if settings.llm_base_url else "local-rules"
    if settings.llm_base_url:
        llm["primary_model"] = settings.llm_model or llm["primary_model"]
        llm["fallback_model"] = settings.llm_fallback_model or llm["fallback_model"]
    config["llm"] = {"gateway": llm.pop("gateway"), **llm}
    return config


def setting(name: str, settings: Settings):
    """One effective value by updatable field name (e.g. ``max_position_size``)."""
    section, key = UPDATABLE_FIELDS[name]
    return current_config(settings)[section][key]


def update_config(updates: dict[str, object]) -> dict[str, object]:
    """Store validated overrides atomically: all of them or none."""
    if not updates:
        raise InvalidInput(
            "invalid request body",
            details=f"give at least one of: {', '.join(UPDATABLE_FIELDS)}",
        )
    unknown = set(updates) - set(UPDATABLE_FIELDS)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput("invalid request body", details="Unknown field.", field=name)
    now = utcnow()
    rows = [
        {"key": name, "value": _jsonable(value), "updated_at": now}
        for name, value in updates.items()
    ]
    applied = {name: _jsonable(value) for name, value in updates.items()}
    with db.atomic():
        ConfigOverride.insert_many(rows).on_conflict(
            conflict_target=[ConfigOverride.key],
            update={ConfigOverride.value: EXCLUDED.value, ConfigOverride.updated_at: now},
        ).execute()
        publish_status("config_updated", "Configuration updated", updates=applied)
        if applied.get("trading_mode") == "paper":
            # The kill switch, in the same transaction: LIVE orders cancelled, sessions paused.
            from app.trading.live import kill_switch

            kill_switch("trading_mode set to paper")
    return applied
