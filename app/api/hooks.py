"""Per-request plumbing: JSON-only bodies, metrics, returning the DB connection to the pool."""

from __future__ import annotations

import time

from flask import Flask, g, jsonify, request

from app.db import close_request_connection
from app.metrics import LATENCY, REQUESTS

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
