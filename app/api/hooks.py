"""Per-request plumbing: JSON-only bodies, metrics, returning the DB connection to the pool."""

from __future__ import annotations

import functools
import logging
import time

from flask import Flask, g, jsonify, request

from app.db import CONNECTION_ERRORS, close_request_connection, db, is_timeout
from app.metrics import LATENCY, REQUESTS

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD")

BODY_METHODS = ("POST", "PUT", "PATCH")


def _require_json_body():
    g.started = time.perf_counter()
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


def _observe(response):
    started = g.pop("started", None)
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
    if started is not None:
        LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
    return response


def register_request_hooks(app: Flask) -> None:
    app.before_request(_require_json_body)
    app.after_request(_observe)
    app.teardown_request(close_request_connection)


def retry_reads_once(view):
    """Run a read again, once, on a fresh connection when its connection turned out dead.

    After a database restart every pooled connection is dead. The pool does not ping on
    checkout (it cost 14-44 % of throughput), so the first use finds out: the broken
    connections are discarded and an idempotent read is retried instead of answering 503.
    """

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if request.method not in READ_METHODS:
            return view(*args, **kwargs)
        try:
            return view(*args, **kwargs)
        except CONNECTION_ERRORS as error:
            if is_timeout(error) or db.in_transaction():
                raise
            log.info("connection lost during %s %s; retrying once", request.method, request.path)
            db.discard_broken()
            return view(*args, **kwargs)

    return wrapper


def wrap_read_views(app: Flask) -> None:
    """Apply :func:`retry_reads_once` to every registered view that answers GET."""
    for rule in app.url_map.iter_rules():
        if "GET" in (rule.methods or ()) and rule.endpoint in app.view_functions:
            app.view_functions[rule.endpoint] = retry_reads_once(app.view_functions[rule.endpoint])
