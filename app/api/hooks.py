"""Per-request plumbing: access control, JSON-only bodies, metrics, CORS and security headers,
returning the DB connection to the pool."""

from __future__ import annotations

import functools
import logging
import time
from urllib.parse import urlsplit

from flask import Flask, Request, g, jsonify, request

from app.api.access import (
    add_rate_headers,
    audit_response,
    authorize,
    prepare_access_control,
    release_websocket,
)
from app.db import CONNECTION_ERRORS, close_request_connection, db, is_retryable, is_timeout
from app.logs import request_id_from
from app.metrics import REQUEST_STATS
from app.realtime.protocol import WS_PATH
from app.settings import Settings

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD")
DEADLOCK_RETRIES = 2

BODY_METHODS = ("POST", "PUT", "PATCH")


def _refuse_nul_in_query(req: Request):
    """PostgreSQL cannot store or compare text with NUL: a 400, not a driver error (500).
    Called for a query string holding ``%00`` (a NUL can only arrive percent-encoded)."""
    for name, value in req.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            response = jsonify(
                {
                    "error": "invalid query parameter",
                    "details": "query parameters must not contain NUL characters",
                    "field": name.replace("\x00", ""),
                }
            )
            response.status_code = 400
            return response
    return None


def _require_json_body(req: Request):
    """415 for a body that is not JSON; called for the methods that take one."""
    has_body = (req.content_length or 0) > 0 or req.headers.get("Transfer-Encoding")
    if has_body and not req.is_json:
        response = jsonify(
            {
                "error": "unsupported media type",
                "details": f"send the body as application/json, not {req.mimetype or 'none'}",
            }
        )
        response.status_code = 415
        return response
    return None


# Pages load only what this server serves. The dashboard runs no inline script (its chart
# library does set inline styles); the Swagger UI page (flask-smorest's template) runs one.
HTML_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
SWAGGER_UI_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
# On every response: no MIME sniffing, no referrer, and Vary: Origin (CORS answers depend on it).
ALWAYS_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Vary", "Origin"),
)
CORS_HEADERS = (
    ("Access-Control-Allow-Headers", "Content-Type, Authorization, X-API-Key"),
    ("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS"),
    ("Access-Control-Max-Age", "600"),
)


REQUEST_ID_KEY = "cryptofunk.request_id"


class StaticHeaders:
    """WSGI middleware adding :data:`ALWAYS_HEADERS` and ``X-Request-ID`` to every response,
    errors included. The request id is the caller's X-Request-ID when acceptable, else a fresh
    one; views and logs read it from the environ.

    Appended to the header list as it is sent: setting them on each Response object went
    through werkzeug's header validation and cost 5 % of a small GET."""

    def __init__(self, wsgi_app, headers=ALWAYS_HEADERS):
        self.wsgi_app = wsgi_app
        self.headers = list(headers)

    def __call__(self, environ, start_response):
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_KEY] = request_id

        def start_with_headers(status, headers, exc_info=None):
            headers.extend(self.headers)
            headers.append(("X-Request-ID", request_id))
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_headers)


class RequestHooks:
    """The hooks around every view of one app: a screening one before, a finishing one after
    and one teardown. Each looks the request and its ``g`` up once and reads the app's pieces
    (access control, route table, CORS origins) from here, not through ``current_app``:
    every proxy lookup is paid on every request."""

    def __init__(self, app: Flask, settings: Settings):
        self.control = app.extensions["cryptofunk"]["access"]
        self.routes = self.control.routes
        self.cors_origins = settings.cors_origins

    def screen(self):
        """Before a view, in this order (a caller without a credential learns nothing about
        its request's shape): start the timer, keep the request id, the event stream's checks,
        access control, then the body and query checks. A check answers by returning a
        response."""
        req = request._get_current_object()
        context = g._get_current_object()
        context.started = time.perf_counter()
        environ = req.environ
        context.request_id = environ.get(REQUEST_ID_KEY) or request_id_from(None)
        if req.path == WS_PATH:
            # No permessage-deflate on the event stream: with it every event would be deflated
            # once per client; without it a frame is the same bytes for everyone, encoded once
            # (app/realtime/frames.py). Event payloads are small JSON, little is lost.
            environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
            refusal = self._refuse_foreign_websocket(req)
            if refusal is not None:
                return refusal
        authorize(req, context, self.control, self.routes.lookup(req)[0])
        if req.method in BODY_METHODS and (refusal := _require_json_body(req)) is not None:
            return refusal
        if b"%00" in req.query_string:
            return _refuse_nul_in_query(req)
        return None

    def finish(self, response):
        """After a view (or its error answer): CORS, the HTML policy, metrics, the audit entry
        and the rate-limit headers."""
        req = request._get_current_object()
        context = g._get_current_object()
        origin = req.environ.get("HTTP_ORIGIN")
        if origin and self._allowed_origin(req, origin):
            headers = response.headers
            headers["Access-Control-Allow-Origin"] = origin
            for name, value in CORS_HEADERS:
                headers[name] = value
        if (response.content_type or "").startswith("text/html"):  # not .mimetype: it parses
            policy = SWAGGER_UI_POLICY if req.path.startswith("/api/docs") else HTML_POLICY
            response.headers.setdefault("Content-Security-Policy", policy)
        started = context.pop("started", None)
        elapsed = time.perf_counter() - started if started is not None else 0.0
        template = self.routes.lookup(req)[1] if req.url_rule is not None else "unmatched"
        REQUEST_STATS.record(req.method, template, response.status_code, elapsed)
        audit_response(req, context, response)
        if self.control.limiter is not None:
            add_rate_headers(context, response)
        return response

    @staticmethod
    def teardown(error: BaseException | None = None) -> None:
        """After the answer: the request's database connection back to the pool, then its
        WebSocket slot (with a connection of its own)."""
        close_request_connection(error)
        release_websocket(g._get_current_object())

    def _allowed_origin(self, req: Request, origin: str) -> bool:
        """The server's own origin, or one listed in CORS_ORIGINS."""
        if urlsplit(origin).netloc == req.host:
            return True
        return origin.rstrip("/") in self.cors_origins

    def _refuse_foreign_websocket(self, req: Request):
        """A web page on another origin must not read the event stream through the browser."""
        origin = req.environ.get("HTTP_ORIGIN")
        if origin and not self._allowed_origin(req, origin):
            response = jsonify(
                {
                    "error": "origin not allowed",
                    "details": f"{origin} may not open the event stream; list it in CORS_ORIGINS",
                }
            )
            response.status_code = 403
            return response
        return None


def register_request_hooks(app: Flask, settings: Settings) -> None:
    """The hooks around every view, and the headers every response carries."""
    prepare_access_control(app, settings)
    hooks = RequestHooks(app, settings)
    app.before_request(hooks.screen)
    app.after_request(hooks.finish)
    app.teardown_request(hooks.teardown)
    app.wsgi_app = StaticHeaders(app.wsgi_app)


def retry_transient_failures(view):
    """Run a request again when the database says that is safe.

    - A deadlock or serialization failure rolled the (single) transaction of a handler back
      whole: it is run again, up to ``DEADLOCK_RETRIES`` times, instead of answering 503.
    - After a database restart every pooled connection is dead. The pool does not ping on
      checkout (it cost 14-44 % of throughput), so the first use finds out: the broken
      connections are discarded and an idempotent read is retried once on a fresh one.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        reconnected = False
        for attempt in range(DEADLOCK_RETRIES + 1):
            try:
                return view(*args, **kwargs)
            except CONNECTION_ERRORS as error:
                if db.in_transaction():
                    raise
                if is_retryable(error) and attempt < DEADLOCK_RETRIES:
                    log.info("%s %s: %s; running it again", request.method, request.path, error)
                    continue
                if request.method in READ_METHODS and not reconnected and not is_timeout(error):
                    log.info("connection lost during %s %s; retrying once", request.method,
                             request.path)  # fmt: skip
                    db.discard_broken()
                    reconnected = True
                    continue
                raise
        return view(*args, **kwargs)

    return wrapper


def wrap_views(app: Flask) -> None:
    """Apply :func:`retry_transient_failures` to every registered view."""
    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = retry_transient_failures(view)
