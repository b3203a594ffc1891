"""Logging for every process: one JSON object per line (or plain text for a terminal), each
carrying the process kind and, inside a web request, the request's id."""

from __future__ import annotations

import logging
import os
import re

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = ("asctime", "levelname", "name", "message")
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}
# A caller's X-Request-ID is kept when it is a plain token of sensible length (it ends up in
# logs and headers: no spaces, quotes or control characters).
ACCEPTED_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id_from(header: str | None) -> str:
    """The caller's request id if it is acceptable, else a fresh one."""
    if header and ACCEPTED_REQUEST_ID.fullmatch(header):
        return header
    return os.urandom(16).hex()  # 128 random bits, as uuid4().hex but without building a UUID


class RequestContext(logging.Filter):
    """Adds ``request_id`` (inside a Flask request) and ``process`` to every record."""

    def __init__(self, process: str):
        super().__init__()
        self.process = process

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_kind = self.process
        if not hasattr(record, "request_id"):
            record.request_id = _current_request_id()
        return True


def _current_request_id() -> str | None:
    from flask import g, has_request_context

    if has_request_context():
        return g.get("request_id")
    return None


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields={**RENAMED, "process_kind": "process"},
        timestamp=False,
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )


def configure_logging(level: str, log_format: str, process: str) -> None:
    """Send every logger's records to stderr, as JSON lines (``log_format="json"``) or text.

    Replaces handlers set earlier (a second call reconfigures), and keeps gunicorn's loggers
    going through the same handler and format.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(
        json_formatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(RequestContext(process))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
