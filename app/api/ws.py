"""The live event stream: ``ws://host/api/v1/ws`` (see app/realtime/hub.py)."""

from __future__ import annotations

from flask_sock import Sock

from app.api.base import settings
from app.db import close_request_connection
from app.realtime.hub import hub

sock = Sock()


@sock.route("/api/v1/ws")
def events(ws):
    """Stream events to one client; the request holds no pooled database connection."""
    close_request_connection()
    hub.ensure_started(settings().database_url)
    hub.serve(ws)
