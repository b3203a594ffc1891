"""The caller's identity, and short-lived tokens for browsers."""

from __future__ import annotations

from app.access import tokens
from app.access.ratelimit import GENERAL, WRITE
from app.access.roles import Role
from app.access.websockets import open_connections
from app.api.access import access_control, current_identity, requires
from app.api.base import ApiBlueprint, settings
from app.errors import Forbidden
from app.schemas.access import MeSchema, TokenSchema
from app.schemas.common import ErrorSchema

blp = ApiBlueprint("auth", __name__, url_prefix="/api/v1/auth", description="Authentication")


@blp.post("/token")
@requires(Role.VIEWER, counts_as=GENERAL)
@blp.response(200, TokenSchema)
@blp.alt_response(403, schema=ErrorSchema, description="Sent with a token instead of a key")
def issue_token():
    """A signed token for the calling key (HS256, short-lived), e.g. for a browser WebSocket."""
    identity = current_identity()
    if identity.via != "key":
        raise Forbidden(
            "a key is required",
            details="tokens are issued to API keys: send the key, not a token"
            if identity.via == "token"
            else "authentication is disabled: there is no key to issue a token for",
        )
    control = access_control()
    token, expires_at = tokens.issue(
        identity, control.authenticator.jwt_secret, settings().jwt_lifetime_seconds
    )
    return {"token": token, "expires_at": expires_at}


@blp.get("/me")
@requires(Role.VIEWER)
@blp.response(200, MeSchema)
def me():
    """Who the credential belongs to, its role and its limits (what a client may show)."""
    identity = current_identity()
    control = access_control()
    limiter = control.limiter
    return {
        "name": identity.name,
        "role": identity.role,
        "authenticated_by": identity.via,
        "auth_enabled": not control.settings.auth_disabled,
        "limits": {
            "general": limiter.limit_text(identity, GENERAL) if limiter else None,
            "write": limiter.limit_text(identity, WRITE) if limiter else None,
            "ws_connections": identity.ws_connections or settings().ws_connections_per_key,
        },
        "ws_connections_open": open_connections(identity.name) if identity.name else 0,
    }
