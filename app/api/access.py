"""Access control on every request: who is calling, may they, how often, and the audit trail.

Each view declares what it needs with :func:`requires` (placed right under ``@blp.get`` and
friends); a view without a declaration is admin-only, so a forgotten route fails closed. The
declaration also lands in the OpenAPI document as ``x-required-role``, ``security`` and the
401/403/429 answers.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

from flask import Flask, current_app, g, request
from flask_smorest import Blueprint

from app.access import audit
from app.access.authenticate import Authenticator, Credential, key_cache
from app.access.limits import counter_for
from app.access.ratelimit import GENERAL, WRITE, RateLimiter
from app.access.roles import ANONYMOUS_ADMIN, Identity, Role
from app.access.tokens import stored_signing_secret
from app.access.websockets import release, reserve
from app.db import CONNECTION_ERRORS, PoolExhausted, db, is_timeout
from app.errors import Forbidden, TooManyRequests, Unauthenticated
from app.realtime.protocol import WS_PATH
from app.settings import Settings

log = logging.getLogger(__name__)

READ_METHODS = ("GET", "HEAD", "OPTIONS")
REFUSALS = (401, 403, 429)
PUBLIC = "public"
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key, or a token from POST /api/v1/auth/token",
    },
}
SECURED = [{"ApiKey": []}, {"Bearer": []}]
WS_RETRY_SECONDS = 5
CONVERTER_IN_RULE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
# Key changes (revocations) are announced here by a trigger on api_keys.
ACCESS_CHANNEL = "cryptofunk_access"


@dataclass(frozen=True)
class RouteAccess:
    """``role`` None: public. ``counts_as``: which rate limit (None: not limited)."""

    role: Role | None
    counts_as: str | None = GENERAL
    audited: bool = True


ADMIN_ONLY = RouteAccess(Role.ADMIN, WRITE)


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _document(access: RouteAccess) -> dict:
    responses = {"503": _error("Database unavailable or busy; see Retry-After")}
    if access.counts_as is not None:
        responses["429"] = _error("Rate limit exceeded; see Retry-After and retry_after")
    if access.role is None:
        return {"x-required-role": PUBLIC, "security": [], "responses": responses}
    responses["401"] = _error("Missing, invalid, expired or revoked credential")
    responses["403"] = _error(f"The credential's role is below {access.role}")
    return {"x-required-role": str(access.role), "security": SECURED, "responses": responses}


def requires(role: Role | None, *, counts_as: str | None = None, audited: bool = True):
    """Declare a view's access: the least ``role`` (None: public), the rate limit it counts
    against (default: writes for state-changing methods, else general; set explicitly for
    exceptions), and whether its writes are audited."""

    if role is None and counts_as is None:
        counts_as = GENERAL  # anonymous callers are counted per address

    def decorate(view):
        documented = Blueprint.doc(**_document(RouteAccess(role, counts_as or GENERAL)))(view)
        documented.access_declared = RouteAccess(role, counts_as, audited)
        return documented

    return decorate


def unlimited_public(view):
    """A public probe: never authenticated or rate limited (a refused probe restarts pods)."""
    documented = Blueprint.doc(**_document(RouteAccess(None, None)))(view)
    documented.access_declared = RouteAccess(None, None)
    return documented


def route_access() -> RouteAccess | None:
    """What the matched view needs; None for an unmatched URL (it answers 404)."""
    if request.url_rule is None or request.endpoint is None:
        return None
    return _declared_access(current_app.view_functions.get(request.endpoint),
                            request.endpoint, request.method)  # fmt: skip


@functools.lru_cache(maxsize=1024)
def _declared_access(view, endpoint: str, method: str) -> RouteAccess:
    if endpoint.startswith("api-docs."):
        return RouteAccess(None, GENERAL)
    declared = getattr(view, "access_declared", None) or ADMIN_ONLY
    if declared.counts_as is None and declared.role is not None:
        kind = GENERAL if method in READ_METHODS else WRITE
        return RouteAccess(declared.role, kind, declared.audited)
    return declared


class AccessControl:
    """Authenticator, limiter and the process's settings, built once per app."""

    def __init__(self, settings: Settings):
        self.settings = settings
        counter = counter_for(settings.ratelimit_storage_uri)
        jwt_secret = settings.jwt_secret
        self.authenticator = Authenticator(
            (lambda: jwt_secret) if jwt_secret else stored_signing_secret,
            counter,
            settings.auth_failure_limit,
            key_cache,
        )
        self.limiter = (
            RateLimiter(counter, settings.rate_limit_general, settings.rate_limit_write)
            if settings.rate_limit_enabled
            else None
        )


def access_control() -> AccessControl:
    return current_app.extensions["cryptofunk"]["access"]


def route_template() -> str:
    """The matched route as the OpenAPI document writes it (``/api/v1/orders/{order_id}``)."""
    if request.url_rule is None:
        return request.path
    return _openapi_path(request.url_rule.rule)


@functools.lru_cache(maxsize=1024)
def _openapi_path(rule: str) -> str:
    return CONVERTER_IN_RULE.sub(r"{\1}", rule)


def client_ip() -> str:
    return request.remote_addr or "unknown"


def credential() -> Credential | None:
    """The credential of this request: X-API-Key, a bearer value, or (WebSocket only) ?token."""
    key = request.headers.get("X-API-Key")
    if key is not None:
        return Credential(key.strip(), "header")
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated(
                "invalid Authorization header",
                details="use Authorization: Bearer <key or token>",
            )
        return Credential(value.strip(), "header")
    if request.path == WS_PATH and "token" in request.args:
        return Credential(request.args["token"], "query")
    return None


def current_identity() -> Identity | None:
    """The caller of this request (None on a public route)."""
    return g.get("identity")


def _authorize():
    """Access control before the view. Nothing of the request has happened yet, so after a
    database restart (dead pooled connections) it is safe to run once more on a fresh one."""
    try:
        return _authorize_once()
    except CONNECTION_ERRORS as error:
        if db.in_transaction() or is_timeout(error):
            raise
        db.discard_broken()
        return _authorize_once()


def _authorize_once():
    if request.method == "OPTIONS":
        return None  # CORS preflight: browsers send it without credentials
    access = route_access()
    if access is None:
        return None
    control = access_control()
    g.access = access
    identity = None
    if access.role is not None:
        if control.settings.auth_disabled:
            identity = ANONYMOUS_ADMIN
        else:
            identity = control.authenticator.authenticate(credential(), client_ip())
        g.identity = identity
        if not identity.role.allows(access.role):
            raise Forbidden(
                "insufficient role",
                details=f"{request.method} {route_template()} needs the {access.role} role; "
                f"this key is {identity.role}",
            )
    if control.limiter is not None and access.counts_as is not None:
        caller = identity or Identity(key_id=None, name=None, role=Role.VIEWER, via="anonymous")
        verdict = control.limiter.count(caller, client_ip(), access.counts_as)
        g.rate_verdict = verdict
        if verdict.exceeded:
            who = f"key {caller.name}" if caller.name else f"address {client_ip()}"
            raise verdict.refusal(who)
    if request.path == WS_PATH and identity is not None and identity.name is not None:
        _reserve_websocket(control, identity)
    return None


def _reserve_websocket(control: AccessControl, identity: Identity) -> None:
    from app.realtime.hub import hub

    hub.ensure_started(control.settings)
    limit = identity.ws_connections or control.settings.ws_connections_per_key
    slot, held = reserve(identity.name, hub.process_id, limit)
    if slot is None:
        raise TooManyRequests(
            "too many WebSocket connections",
            details=f"key {identity.name} holds {held} of its {limit} connections; close one, "
            f"or give the key a higher ws_connections",
            retry_after=WS_RETRY_SECONDS,
        )
    g.ws_slot = slot


def _release_websocket(error=None):
    slot = g.pop("ws_slot", None)
    if slot is not None:
        try:
            with db.connection_context():  # teardown: the request's connection is gone
                release(slot)
        except (*CONNECTION_ERRORS, PoolExhausted):
            log.warning("could not release WebSocket slot %s; it expires with its process", slot)


def _rate_headers(response):
    verdict = g.get("rate_verdict")
    if verdict is not None:
        response.headers.update(verdict.headers())
    return response


def _request_body():
    if request.content_length and request.content_length > request.max_content_length:
        return None
    try:
        return request.get_json(silent=True, cache=True)
    except Exception:  # unreadable body: the request was refused for it; audit without it
        return None


def _audit(response):
    access: RouteAccess | None = g.get("access")
    status = response.status_code
    is_write = request.method not in READ_METHODS and access is not None and access.audited
    if not (is_write or status in REFUSALS) or request.method == "OPTIONS":
        return response
    identity = current_identity()
    entry = audit.AuditRecord(
        key_name=identity.name if identity else None,
        role=str(identity.role) if identity and not identity.anonymous else None,
        method=request.method,
        route=route_template(),
        path=request.path,
        status=status,
        client_ip=client_ip(),
        body=_request_body() if is_write else None,
    )
    try:
        audit.record(entry)
    except Exception:  # the answer stands even if the trail cannot be written; say so loudly
        log.exception("could not write the audit entry for %s %s", request.method, request.path)
    return response


def register_access_control(app: Flask, settings: Settings) -> None:
    """Authenticate, authorise and rate-limit before every view; audit and add headers after."""
    if settings.auth_disabled:
        log.warning(
            "AUTH_DISABLED=true: every request acts as admin without a key; this is allowed "
            "only because the server binds to %s (loopback)",
            settings.api_host,
        )
    app.extensions["cryptofunk"]["access"] = AccessControl(settings)
    from app.realtime.hub import hub

    hub.watch(ACCESS_CHANNEL, key_cache.invalidate, key_cache.trust)
    app.before_request(_authorize)
    app.after_request(_rate_headers)
    app.after_request(_audit)
    app.teardown_request(_release_websocket)


def declare_security(api) -> None:
    """Add the security schemes to the OpenAPI document."""
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
