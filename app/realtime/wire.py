"""The one place that reaches into simple-websocket's internals.

The hub writes frames itself (one ``sendall`` per batch, bounded by a timeout, from one sender
greenlet) instead of using ``Server.send``, so it needs the raw socket, the wsproto connection
that frames pings and closes, and the flags simple-websocket's reader thread keeps. Those are
not public API: the supported versions are checked when the hub starts.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from importlib.metadata import version

import gevent
from packaging.specifiers import SpecifierSet
from wsproto.events import CloseConnection, Ping

SUPPORTED_VERSIONS = SpecifierSet(">=1.1,<1.2")


def check_library_version() -> str:
    """The installed simple-websocket version; RuntimeError if its internals may differ."""
    installed = version("simple-websocket")
    if installed not in SUPPORTED_VERSIONS:
        raise RuntimeError(
            f"simple-websocket {installed} is not supported by app/realtime/wire.py "
            f"(needs {SUPPORTED_VERSIONS}); check its internals and update the adapter"
        )
    return installed


class Wire:
    """Raw access to one simple-websocket server connection."""

    def __init__(self, ws):
        self._ws = ws

    def write(self, data: bytes) -> None:
        """All of ``data``, or an exception: a partial write must never cut a frame."""
        self._ws.sock.sendall(data)

    def write_now(self, data: bytes) -> int:
        """Write what the socket takes without waiting; the number of bytes written (0 when
        its buffer is full). The caller queues the rest."""
        try:
            return self._ws.sock.send(data, 0, timeout=0.0)
        except BlockingIOError:
            return 0
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            raise

    def ping(self) -> bytes:
        """A ping frame, with the pong flag reset (the reader sets it on the answer)."""
        self._ws.pong_received = False
        return self._ws.ws.send(Ping())

    @property
    def pong_received(self) -> bool:
        return bool(self._ws.pong_received)

    @property
    def connected(self) -> bool:
        return bool(self._ws.connected)

    def close_frame(self, code: int, reason: str) -> bytes:
        return self._ws.ws.send(CloseConnection(code=code, reason=reason))

    def release(self, linger: float = 1.0) -> None:
        """Mark the connection closed, wake the request greenlet blocked in ``receive()``, and
        shut the socket down after ``linger`` seconds (the close frame goes out first)."""
        self._ws.connected = False
        self._ws.event.set()
        gevent.spawn_later(linger, _shutdown_socket, self._ws.sock)


def _shutdown_socket(sock) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
