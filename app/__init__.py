"""CryptoFunk: control plane and paper-trading engine of a multi-agent crypto trading system."""

from __future__ import annotations

from flask import Flask

from app import precision  # noqa: F401  (sets the decimal precision before anything computes)
from app.settings import VERSION, Settings

__version__ = VERSION


class ApiFlask(Flask):
    """Flask without the per-call coroutine check: every view and hook here is synchronous
    (gevent gives the concurrency), and the check ran ~18 times per request."""

    def ensure_sync(self, func):
        return func


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI app. No I/O happens here: the database is only connected per request."""
    from app.api import register_blueprints
    from app.api.access import SECURED, declare_security
    from app.api.base import RestApi
    from app.api.converters import register_converters
    from app.api.errors import register_error_handlers
    from app.api.hooks import register_request_hooks, wrap_views
    from app.api.json_provider import ApiJSONProvider
    from app.api.ws import sock
    from app.dashboard import SWAGGER_UI_PATH, register_dashboard
    from app.db import init_database
    from app.logs import configure_logging
    from app.realtime.hub import hub

    settings = settings or Settings.from_env()
    if not settings.database_url:
        raise RuntimeError(
            "DATABASE_URL is not set: start with `python -m app run` (embedded PostgreSQL) "
            "or point DATABASE_URL at a PostgreSQL server with pgvector"
        )
    configure_logging(settings.log_level, settings.log_format, "web")

    app = ApiFlask(__name__, static_folder=None)
    app.json = ApiJSONProvider(app)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        TESTING=settings.testing,
        API_TITLE="CryptoFunk Trading API",
        API_VERSION=VERSION,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="api/v1/openapi.json",
        OPENAPI_SWAGGER_UI_PATH="api/docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_PATH,  # served from the package: works offline
        API_SPEC_OPTIONS={
            "info": {
                "description": "REST + WebSocket API of the CryptoFunk multi-agent trading "
                "system. Live events (order_update, trade, position_update, agent_status, "
                "system_status, error, decision) stream on the WebSocket at /api/v1/ws."
            },
            "servers": [{"url": "/"}],
            "security": SECURED,
        },
    )
    app.extensions["cryptofunk"] = {"settings": settings}
    app.url_map.strict_slashes = False

    init_database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout=settings.db_pool_timeout,
        lock_timeout=settings.db_lock_timeout,
        statement_timeout=settings.db_statement_timeout,
        prepare_statements=settings.db_prepared_statements,
    )
    if settings.trusted_proxy_count:
        from werkzeug.middleware.proxy_fix import ProxyFix

        count = settings.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)
    api = RestApi(app)
    register_converters(app, api)
    declare_security(api)
    register_error_handlers(app)
    register_request_hooks(app, settings)
    register_blueprints(app, api)
    register_dashboard(app)
    wrap_views(app)
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": hub.settings.max_message_size}
    sock.init_app(app)
    return app


__all__ = ["create_app"]
