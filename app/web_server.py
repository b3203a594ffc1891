"""gunicorn plumbing that keeps the API's promises outside Flask: gunicorn's own errors (414,
431, bad request lines) answer in JSON, and credentials never reach its logs."""

from __future__ import annotations

import json
import re

from gunicorn import util
from gunicorn.glogging import Logger

CREDENTIAL_IN_QUERY = re.compile(r"((?:^|[?&\s])token=)[^&\s]*", re.IGNORECASE)
CREDENTIAL_HEADERS = ("{authorization}i", "{x-api-key}i", "{cookie}i")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """A request line or query string with any ``token=`` value replaced."""
    return CREDENTIAL_IN_QUERY.sub(rf"\1{REDACTED}", text) if text else text


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Replacement for ``gunicorn.util.write_error`` (which writes an HTML page)."""
    body = {"error": reason.lower()}
    if mesg:
        body["details"] = redact(mesg)
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + payload)


def install_json_errors() -> None:
    """Make gunicorn's pre-application errors JSON (workers look the function up per call)."""
    util.write_error = write_json_error


class RedactingLogger(Logger):
    """gunicorn's logger without credentials: ``?token=`` in request lines and query strings,
    and the Authorization/X-API-Key headers should a custom access log format name them."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("r", "q", "f"):
            if isinstance(atoms.get(name), str):
                atoms[name] = redact(atoms[name])
        for name in CREDENTIAL_HEADERS:
            if name in atoms:
                atoms[name] = REDACTED
        return atoms

    def setup(self, cfg):
        """gunicorn's own handlers, writing in the processes' format (JSON lines by default)."""
        super().setup(cfg)
        import os

        from app.logs import RequestContext, json_formatter

        if (os.environ.get("LOG_FORMAT") or "json").lower() == "json":
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(json_formatter())
                    handler.addFilter(RequestContext("web"))

    def warning(self, msg, *args, **kwargs):
        super().warning(redact(msg) if isinstance(msg, str) else msg, *args, **kwargs)
