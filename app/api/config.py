"""Runtime configuration: read (sanitised) and update (validated, stored in the database)."""

from __future__ import annotations

from app import runtime_config
from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint, settings
from app.schemas.common import ErrorSchema
from app.schemas.config import ConfigDocumentSchema, ConfigUpdateArgs, ConfigUpdatedSchema

blp = ApiBlueprint("config", __name__, url_prefix="/api/v1/config", description="Configuration")


@blp.get("")
@requires(Role.VIEWER)
@blp.response(200, ConfigDocumentSchema)
def get_config():
    """Get current system configuration (sanitised: no API keys or secrets)."""
    return {"config": runtime_config.current_config(settings())}


@blp.patch("")
@requires(Role.ADMIN)
@blp.arguments(ConfigUpdateArgs)
@blp.response(200, ConfigUpdatedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Unknown field or invalid value")
def update_config(args: dict):
    """Update runtime configuration; all fields are applied or none."""
    updates = runtime_config.update_config(args)
    return {
        "message": "Configuration updated successfully",
        "updates": updates,
        "note": "Stored in the database: every process uses the new values and they survive "
        "restarts",
    }
