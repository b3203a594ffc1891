"""Server-to-client WebSocket frames, encoded once and shared by every client.

Compression is declined at the handshake (see app/api/ws.py), so a text frame is the same bytes
for every connection: an event is framed once, not once per client.
"""

from __future__ import annotations

from wsproto.frame_protocol import FrameProtocol

# Unmasked, unfragmented, no extensions: encoding keeps no state between messages.
_SERVER_FRAMES = FrameProtocol(client=False, extensions=[])


def text_frame(payload: str) -> bytes:
    """One complete text frame carrying ``payload``."""
    return bytes(_SERVER_FRAMES.send_data(payload, fin=True))
