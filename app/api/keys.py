"""API keys: issue (shown once), list, revoke. Admins only."""

from __future__ import annotations

from app.access import keys
from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint, settings
from app.schemas.access import CreatedKeySchema, CreateKeyArgs, KeyListSchema, KeyRevokedSchema
from app.schemas.common import ErrorSchema

KEY_FIELDS = ("name", "role", "rate_limit", "write_limit", "ws_connections", "created_at")
blp = ApiBlueprint("keys", __name__, url_prefix="/api/v1/keys", description="API keys")


@blp.get("")
@requires(Role.ADMIN)
@blp.response(200, KeyListSchema)
def list_keys():
    """Active keys with their role, limits, and when they were created and last used."""
    active = keys.list_keys()
    return {"keys": active, "count": len(active)}


@blp.post("")
@requires(Role.ADMIN)
@blp.arguments(CreateKeyArgs)
@blp.response(201, CreatedKeySchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid name, role or limit")
@blp.alt_response(409, schema=ErrorSchema, description="An active key has this name")
def create_key(args: dict):
    """Issue a key. The key is in this answer only: only its hash is stored."""
    key, raw = keys.create_key(keys.KeyRequest(**args))
    return {field: getattr(key, field) for field in KEY_FIELDS} | {"key": raw}


@blp.delete("/<name:name>")
@requires(Role.ADMIN)
@blp.response(200, KeyRevokedSchema)
@blp.alt_response(400, schema=ErrorSchema, description="The bootstrap key or the last admin key")
@blp.alt_response(404, schema=ErrorSchema, description="No active key has this name")
def revoke_key(name: str):
    """Revoke a key: it stops working on every process at once, tokens issued to it too."""
    keys.revoke_key(name, settings().admin_key, keep_an_admin=True)
    return {"message": "Key revoked", "name": name}
