"""HTTP API: one blueprint module per resource; handlers validate, call the domain, serialise."""

from __future__ import annotations

from flask import Flask

from app.api.base import RestApi


def register_blueprints(app: Flask, api: RestApi) -> None:
    """Attach every resource blueprint to the app (and so to the OpenAPI document)."""
    from app.api import (
        agents,
        audit,
        auth,
        config,
        decisions,
        keys,
        market,
        orders,
        positions,
        sessions,
        system,
        trades,
        trading,
    )

    api.register_blueprint(system.root)
    for module in (
        system,
        agents,
        positions,
        orders,
        trading,
        sessions,
        trades,
        config,
        decisions,
        market,
        auth,
        keys,
        audit,
    ):
        api.register_blueprint(module.blp)
