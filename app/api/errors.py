"""The one place errors become HTTP responses: always JSON, never HTML or a traceback."""

from __future__ import annotations

import logging

import peewee
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from app.db import CONNECTION_ERRORS, PoolExhausted, db, is_timeout
from app.errors import (
    Conflict,
    CryptoFunkError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[CryptoFunkError], int], ...] = (
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyRequests, 429),
    (Unavailable, 503),
)

HTTP_MESSAGES = {
    400: "bad request",
    404: "resource not found",
    405: "method not allowed",
    413: "request body too large",
    415: "unsupported media type",
    429: "too many requests",
    500: "internal server error",
}


def status_for(error: CryptoFunkError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def _http_details(error: HTTPException) -> str | None:
    if error.code == 404:
        return f"no route for {request.method} {request.path}"
    if error.code == 405:
        allowed = error.valid_methods or []
        return f"{request.method} is not allowed here; allowed: {', '.join(sorted(allowed))}"
    if error.code == 413:
        limit = request.max_content_length
        return f"the body must be at most {limit} bytes" if limit else None
    if error.code == 500:
        return None
    return error.description


def render_http_exception(error: HTTPException):
    body = {"error": HTTP_MESSAGES.get(error.code, error.name.lower())}
    details = _http_details(error)
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = error.code or 500
    for name in ("Allow", "Retry-After"):
        value = error.get_response().headers.get(name)
        if value:
            response.headers[name] = value
    return response


def render_domain_error(error: CryptoFunkError):
    response = jsonify(error.to_dict())
    response.status_code = status_for(error)
    if isinstance(error, Unavailable | TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthenticated):
        response.headers["WWW-Authenticate"] = 'Bearer realm="cryptofunk"'
    return response


def render_database_error(error: Exception):
    if is_timeout(error):
        # The server is fine; a row lock or a slow statement outlasted DB_LOCK_TIMEOUT or
        # DB_STATEMENT_TIMEOUT. The connection stays usable once the transaction is gone.
        log.warning("database timeout: %s", str(error).strip())
        return render_domain_error(
            Unavailable(
                "database busy",
                details="the request waited too long on a lock or a slow query; retry",
            )
        )
    log.warning("database unavailable: %s", error)
    # The connection may be dead, and after a restart so are the idle ones: drop them all.
    db.discard_broken()
    return render_domain_error(
        Unavailable("database unavailable", details="the database could not be reached; retry")
    )


def render_pool_exhausted(error: PoolExhausted):
    log.warning("database pool exhausted: %s", error)
    return render_domain_error(
        Unavailable(
            "database busy", details="every database connection of this process is in use; retry"
        )
    )


def render_data_error(error: peewee.DatabaseError):
    # PostgreSQL's own text names tables, constraints and values: it stays in the log.
    log.warning("database rejected a write: %s", error)
    if isinstance(error, peewee.IntegrityError):
        return render_domain_error(
            Conflict(
                "request conflicts with stored data",
                details="a uniqueness or reference rule of the stored data refused this write",
            )
        )
    return render_domain_error(
        InvalidInput(
            "invalid value for the database",
            details="a value is out of the range or form the database stores",
        )
    )


def render_unexpected(error: Exception):
    log.exception("unhandled error on %s %s", request.method, request.path)
    return render_http_exception(InternalServerError())


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(CryptoFunkError, render_domain_error)
    app.register_error_handler(HTTPException, render_http_exception)
    for error_type in CONNECTION_ERRORS:
        app.register_error_handler(error_type, render_database_error)
    app.register_error_handler(PoolExhausted, render_pool_exhausted)
    app.register_error_handler(peewee.IntegrityError, render_data_error)
    app.register_error_handler(peewee.DataError, render_data_error)
    app.register_error_handler(Exception, render_unexpected)
