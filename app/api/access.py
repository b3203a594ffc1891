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

import orjson
from flask import Flask, Request, current_app, g
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
        documented = _with_doc(view, _document(RouteAccess(role, counts_as or GENERAL)))
        documented.access_declared = RouteAccess(role, counts_as, audited)
        return documented

    return decorate


def _with_doc(view, doc: dict):
    """``view`` with ``doc`` merged into its OpenAPI operation (flask-smorest's ``doc``, minus
    the wrapper it puts around the view)."""
    view._apidoc = Blueprint.doc(**doc)(view)._apidoc
    return view


def unlimited_public(view):
    """A public probe: never authenticated or rate limited (a refused probe restarts pods)."""
    documented = _with_doc(view, _document(RouteAccess(None, None)))
    documented.access_declared = RouteAccess(None, None)
    return documented


class RouteTable:
    """What each route needs and how the OpenAPI document names it, worked out at the first
    request of each route and method and then looked up (a request asks twice: before the
    view for access control, after it for metrics)."""

    def __init__(self, view_functions: dict):
        self.view_functions = view_functions
        self._known: dict[tuple[int, str], tuple[RouteAccess, str]] = {}

    def lookup(self, req: Request) -> tuple[RouteAccess | None, str]:
        """The access the route of ``req`` needs (None for an unmatched URL, which answers
        404) and its template (``/api/v1/orders/{order_id}``; the path when unmatched)."""
        rule = req.url_rule
        if rule is None:
            return None, req.path
        key = (id(rule), req.method)  # rules live as long as the app, and are unhashable
        known = self._known.get(key)
        if known is None:
            endpoint = rule.endpoint
            access = _declared_access(self.view_functions.get(endpoint), endpoint, req.method)
            known = self._known[key] = (access, _openapi_path(rule.rule))
        return known


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
    """Authenticator, limiter, route table and the process's settings, built once per app."""

    def __init__(self, settings: Settings, view_functions: dict):
        self.settings = settings
        self.view_functions = view_functions
        self.routes = RouteTable(view_functions)
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


def route_template(req: Request) -> str:
    """The matched route as the OpenAPI document writes it (``/api/v1/orders/{order_id}``)."""
    if req.url_rule is None:
        return req.path
    return _openapi_path(req.url_rule.rule)


@functools.lru_cache(maxsize=1024)
def _openapi_path(rule: str) -> str:
    return CONVERTER_IN_RULE.sub(r"{\1}", rule)


def client_ip(req: Request) -> str:
    return req.remote_addr or "unknown"


def credential(req: Request) -> Credential | None:
    """The credential of ``req``: X-API-Key, a bearer value, or (WebSocket only) ?token."""
    environ = req.environ  # read directly: werkzeug's header view is built per request
    key = environ.get("HTTP_X_API_KEY")
    if key is not None:
        return Credential(key.strip(), "header")
    authorization = environ.get("HTTP_AUTHORIZATION")
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated(
                "invalid Authorization header",
                details="use Authorization: Bearer <key or token>",
            )
        return Credential(value.strip(), "header")
    if req.path == WS_PATH and "token" in req.args:
        return Credential(req.args["token"], "query")
    return None


def current_identity() -> Identity | None:
    """The caller of this request (None on a public route)."""
    return g.get("identity")


def authorize(req: Request, context, control: AccessControl, access: RouteAccess | None) -> None:
    """Access control before the view: authenticate, authorise and count ``req`` against what
    its route needs (``access``; None: an unmatched URL), keeping what was found on
    ``context`` (the request's ``g``). Nothing of the request has happened yet, so after a
    database restart (dead pooled connections) it is safe to run once more on a fresh
    connection."""
    if access is None or req.method == "OPTIONS":
        return  # a 404, or a CORS preflight (browsers send it without credentials)
    try:
        _authorize_once(req, context, control, access)
    except CONNECTION_ERRORS as error:
        if db.in_transaction() or is_timeout(error):
            raise
        db.discard_broken()
        _authorize_once(req, context, control, access)


def _authorize_once(req: Request, context, control: AccessControl, access: RouteAccess) -> None:
    context.access = access
    identity = None
    if access.role is not None:
        if control.settings.auth_disabled:
            identity = ANONYMOUS_ADMIN
        else:
            identity = control.authenticator.authenticate(credential(req), client_ip(req))
        context.identity = identity
        if not identity.role.allows(access.role):
            raise Forbidden(
                "insufficient role",
                details=f"{req.method} {route_template(req)} needs the {access.role} role; "
                f"this key is {identity.role}",
            )
    if control.limiter is not None and access.counts_as is not None:
        caller = identity or Identity(key_id=None, name=None, role=Role.VIEWER, via="anonymous")
        verdict = control.limiter.count(caller, client_ip(req), access.counts_as)
        context.rate_verdict = verdict
        if verdict.exceeded:
            who = f"key {caller.name}" if caller.name else f"address {client_ip(req)}"
            raise verdict.refusal(who)
    if identity is not None and identity.name is not None and req.path == WS_PATH:
        context.ws_slot = _reserve_websocket(control, identity)
    if access.audited and req.method not in READ_METHODS:
        success = getattr(control.view_functions[req.endpoint], "success_status", None)
        if success is not None:
            # Written by the work's own COMMIT when it succeeds (see audit_response).
            context.audit_success = success
            audit.record_with_next_commit(_audit_record(req, identity, success, write=True))


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
    return slot


def release_websocket(context) -> None:
    """Give back the WebSocket slot this request reserved, if any (``context``: its ``g``;
    at teardown)."""
    slot = context.pop("ws_slot", None)
    if slot is not None:
        try:
            with db.connection_context():  # teardown: the request's connection is gone
                release(slot)
        except (*CONNECTION_ERRORS, PoolExhausted):
            log.warning("could not release WebSocket slot %s; it expires with its process", slot)


def add_rate_headers(context, response) -> None:
    """The rate limit's X-RateLimit-* headers, when this request was counted."""
    verdict = context.get("rate_verdict")  # g.get: a missing attribute would raise inside
    if verdict is not None:
        response.headers.update(verdict.headers())


def _request_body(req: Request):
    if req.content_length and req.content_length > req.max_content_length:
        return None
    if not req.is_json:
        return None
    try:
        return orjson.loads(req.get_data(cache=True))
    except Exception:  # unreadable body: the request was refused for it; audit without it
        return None


def _audit_record(req: Request, identity: Identity | None, status: int, write: bool):
    return audit.AuditRecord(
        key_name=identity.name if identity else None,
        role=str(identity.role) if identity and not identity.anonymous else None,
        method=req.method,
        route=route_template(req),
        path=req.path,
        status=status,
        client_ip=client_ip(req),
        body=_request_body(req) if write else None,
    )


def audit_response(req: Request, context, response) -> None:
    """Write the audit entry of an audited write, and of every refusal (401, 403, 429).

    A write that committed and answered its success status already has its entry: it rode the
    work's COMMIT. Any other outcome (refused, failed, rolled back, or a different answer after
    the commit) is written here, on its own.
    """
    status = response.status_code
    method = req.method
    if method in READ_METHODS and status not in REFUSALS:
        return  # the common case: a read that was let in
    success = context.pop("audit_success", None)
    if success is not None and audit.committed_with_work() and status == success:
        return
    access: RouteAccess | None = context.get("access")
    is_write = method not in READ_METHODS and access is not None and access.audited
    if not (is_write or status in REFUSALS) or method == "OPTIONS":
        return
    identity: Identity | None = context.get("identity")
    try:
        audit.record(_audit_record(req, identity, status, write=is_write))
    except Exception:  # the answer stands even if the trail cannot be written; say so loudly
        log.exception("could not write the audit entry for %s %s", method, req.path)


def prepare_access_control(app: Flask, settings: Settings) -> None:
    """Build the app's :class:`AccessControl` and follow key revocations. The request hooks
    (app.api.hooks) call :func:`authorize`, :func:`add_rate_headers`, :func:`audit_response`
    and :func:`release_websocket`."""
    if settings.auth_disabled:
        log.warning(
            "AUTH_DISABLED=true: every request acts as admin without a key; this is allowed "
            "only because the server binds to %s (loopback)",
            settings.api_host,
        )
    app.extensions["cryptofunk"]["access"] = AccessControl(settings, app.view_functions)
    from app.realtime.hub import hub

    hub.watch(ACCESS_CHANNEL, key_cache.invalidate, key_cache.trust)


def declare_security(api) -> None:
    """Add the security schemes to the OpenAPI document."""
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)
