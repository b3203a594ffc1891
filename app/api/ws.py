"""The live event stream: ``ws://host/api/v1/ws`` (see app/realtime/hub.py)."""

from __future__ import annotations

from flask_sock import Sock

from app.access.ratelimit import GENERAL
from app.access.roles import Role
from app.api.access import requires
from app.api.base import settings
from app.db import close_request_connection
from app.realtime.hub import hub
from app.realtime.protocol import WS_PATH

sock = Sock()


@sock.route(WS_PATH)
@requires(Role.VIEWER, counts_as=GENERAL, audited=False)
def events(ws):
    """Stream events to one client; the request holds no pooled database connection."""
    close_request_connection()
    hub.ensure_started(settings())
    hub.serve(ws)
