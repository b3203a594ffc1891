"""Per-request plumbing: JSON-only bodies, metrics, returning the DB connection to the pool."""

from __future__ import annotations

import functools
import logging
import time
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g, jsonify, request

from app.api.access import register_access_control, route_template
from app.db import CONNECTION_ERRORS, close_request_connection, db, is_retryable, is_timeout
from app.metrics import latency_histogram, request_counter
from app.realtime.protocol import WS_PATH
from app.settings import Settings

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD")
DEADLOCK_RETRIES = 2

BODY_METHODS = ("POST", "PUT", "PATCH")


def _refuse_nul_in_query():
    """PostgreSQL cannot store or compare text with NUL: a 400, not a driver error (500)."""
    if b"%00" not in request.query_string:
        return None  # a NUL can only arrive percent-encoded
    for name, value in request.args.items(multi=True):
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


def _start_timer():
    g.started = time.perf_counter()


def _require_json_body():
    if request.method not in BODY_METHODS:
        return None
    has_body = (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding")
    if has_body and not request.is_json:
        response = jsonify(
            {
                "error": "unsupported media type",
                "details": f"send the body as application/json, not {request.mimetype or 'none'}",
            }
        )
        response.status_code = 415
        return response
    return None


# The Swagger UI page loads its scripts and styles from a CDN and runs an inline script.
HTML_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'"
)


class ApiResponse(Response):
    """Every response starts with the headers every response carries: no MIME sniffing, no
    referrer, and ``Vary: Origin`` (CORS answers depend on it). Added once here, not looked up
    and set by an after-request hook (that cost 6 % of a small GET)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.headers.extend(ALWAYS_HEADERS)


ALWAYS_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Vary", "Origin"),
)


def _html_policy(response):
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", HTML_POLICY)
    return response


def _allowed_origin(origin: str) -> bool:
    """The server's own origin, or one listed in CORS_ORIGINS."""
    if urlsplit(origin).netloc == request.host:
        return True
    return origin.rstrip("/") in current_app.extensions["cryptofunk"]["settings"].cors_origins


def _refuse_foreign_websocket():
    """A web page on another origin must not read the event stream through the browser."""
    if request.path != WS_PATH:
        return None
    origin = request.environ.get("HTTP_ORIGIN")
    if origin and not _allowed_origin(origin):
        response = jsonify(
            {
                "error": "origin not allowed",
                "details": f"{origin} may not open the event stream; list it in CORS_ORIGINS",
            }
        )
        response.status_code = 403
        return response
    return None


def _cors(response):
    # (Vary: Origin is on every response already: see ApiResponse.)
    origin = request.environ.get("HTTP_ORIGIN")
    if origin and _allowed_origin(origin):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, X-API-Key"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE, OPTIONS"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _observe(response):
    started = g.pop("started", None)
    endpoint = route_template() if request.url_rule else "unmatched"
    request_counter(request.method, endpoint, response.status_code).inc()
    if started is not None:
        latency_histogram(request.method, endpoint).observe(time.perf_counter() - started)
    return response


def register_request_hooks(app: Flask, settings: Settings) -> None:
    """Before a view: timer, Origin check, access control, body and query checks (in this
    order: a caller without a credential learns nothing about its request's shape)."""
    app.before_request(_start_timer)
    app.before_request(_refuse_foreign_websocket)
    register_access_control(app, settings)
    app.before_request(_require_json_body)
    app.before_request(_refuse_nul_in_query)
    app.after_request(_observe)
    app.response_class = ApiResponse
    app.after_request(_html_policy)
    app.after_request(_cors)
    app.teardown_request(close_request_connection)


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
