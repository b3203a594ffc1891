"""The live event stream: ``ws://host/api/v1/ws`` (see app/realtime/hub.py)."""

from __future__ import annotations

from flask import request
from flask_sock import Sock

from app.access.ratelimit import GENERAL
from app.access.roles import Role
from app.api.access import requires
from app.api.base import settings
from app.db import close_request_connection
from app.realtime.hub import hub
from app.realtime.protocol import WS_PATH

sock = Sock()


def decline_compression():
    """Refuse permessage-deflate for the event stream.

    With per-connection compression every event would be deflated once per client; without it a
    frame is the same bytes for everyone and is encoded once (app/realtime/frames.py). Event
    payloads are small JSON, so little is lost on the wire.
    """
    if request.path == WS_PATH:
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@sock.route(WS_PATH)
@requires(Role.VIEWER, counts_as=GENERAL, audited=False)
def events(ws):
    """Stream events to one client; the request holds no pooled database connection."""
    close_request_connection()
    hub.ensure_started(settings())
    hub.serve(ws)
