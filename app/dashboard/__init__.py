"""The operator's web dashboard at /dashboard, and the Swagger UI's assets, served from the
package: no CDN, so both work on a machine without internet access.

The pages hold no data; they call the API with the key the operator enters, so they are
public. Assets are cacheable (their names change with their version).
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, Flask, send_from_directory

from app.api.access import unlimited_public

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = Path(swagger_ui_bundle.swagger_ui_path)
SWAGGER_UI_PATH = "/api/docs/assets/"
ASSET_MAX_AGE = 3600

dashboard = Blueprint("dashboard", __name__)


@dashboard.get("/dashboard")
@unlimited_public
def page():
    """The dashboard's single page."""
    return send_from_directory(STATIC, "index.html", max_age=0)


@dashboard.get("/dashboard/<path:filename>")
@unlimited_public
def asset(filename: str):
    """A script, style sheet or vendored library of the dashboard (404 for anything else)."""
    return send_from_directory(STATIC, filename, max_age=ASSET_MAX_AGE)


@dashboard.get(f"{SWAGGER_UI_PATH}<path:filename>")
@unlimited_public
def swagger_asset(filename: str):
    """Swagger UI's scripts and styles, from the pinned swagger-ui-bundle package."""
    return send_from_directory(SWAGGER_UI, filename, max_age=ASSET_MAX_AGE)


def register_dashboard(app: Flask) -> None:
    """Serve the dashboard and the Swagger UI assets (OPENAPI_SWAGGER_UI_URL points at them)."""
    app.register_blueprint(dashboard)
