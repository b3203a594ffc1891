"""The per-process WebSocket hub: one LISTEN connection in, a bounded queue per client out.

Every web process runs one hub. Its listener (app/realtime/listener.py) holds a dedicated
connection that LISTENs on ``cryptofunk_events``; each notification is parsed once and its
frame offered to every subscribed client's queue. Presence (app/realtime/presence.py) records
how many clients the process holds; raw socket access is in app/realtime/wire.py.

A client whose queue is full is disconnected (1013) instead of slowing the others. An event for
a client with nothing queued and no write in progress is written to its socket at once, as far
as the socket takes it without waiting (no greenlet switch per client and event); everything
else goes through the client's queue to its one sender greenlet, which also writes pongs,
keepalive pings (with the pong deadline) and closes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import gevent
from gevent.event import Event as GeventEvent
from gevent.queue import Empty, Full, Queue
from simple_websocket import ConnectionClosed

from app.errors import InvalidInput
from app.metrics import WS_DROPPED, WS_EVENTS
from app.realtime.frames import text_frame
from app.realtime.listener import Listener
from app.realtime.presence import PresenceRecorder
from app.realtime.protocol import (
    Event,
    Subscription,
    envelope,
    error_message,
    parse_client_message,
)
from app.realtime.wire import Wire, check_library_version
from app.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "cryptofunk_events"
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
# Queued frames a sender joins into one socket write when a client has fallen a little behind.
MAX_FRAMES_PER_WRITE = 64


@dataclass(frozen=True)
class HubSettings:
    ping_interval: float = 54.0
    pong_timeout: float = 60.0
    send_queue: int = 256
    write_timeout: float = 10.0
    max_message_size: int = 512

    @classmethod
    def from_settings(cls, settings: Settings) -> HubSettings:
        return cls(
            ping_interval=settings.ws_ping_interval,
            pong_timeout=settings.ws_pong_timeout,
            send_queue=settings.ws_send_queue,
            write_timeout=settings.ws_write_timeout,
        )


class ClientConnection:
    """One WebSocket client: its subscription, its send queue and its sender greenlet."""

    def __init__(self, ws, settings: HubSettings, on_closed):
        self.wire = Wire(ws)
        self.settings = settings
        self.subscription = Subscription()
        self.queue: Queue = Queue(maxsize=settings.send_queue)
        self.open = True
        self.writing = False  # the sender is inside a write: nobody else may write now
        self.finished = GeventEvent()
        self._on_closed = on_closed
        self.sender = gevent.spawn(self._send_loop)

    def offer(self, frame: bytes) -> bool:
        """Send or queue a frame without ever waiting; False when the client has fallen behind.

        With nothing queued and no write in progress the frame goes straight to the socket;
        whatever the socket does not take at once is queued for the sender, in order.
        """
        if not self.writing and self.queue.empty():
            try:
                written = self.wire.write_now(frame)
            except OSError:
                written = 0  # the sender meets the error on its next write and ends
            if written == len(frame):
                return True
            frame = frame[written:]
        try:
            self.queue.put_nowait(frame)
        except Full:
            return False
        return True

    def _write(self, data: bytes) -> None:
        # Bounded by the write timeout so one stuck client cannot hold its greenlet.
        self.writing = True
        try:
            with gevent.Timeout(self.settings.write_timeout):
                self.wire.write(data)
        finally:
            self.writing = False

    def _take_queued(self, first: bytes) -> tuple[bytes, _Close | None]:
        """``first`` plus whatever else is queued, as one write (one syscall under load)."""
        frames = [first]
        closing = None
        while len(frames) < MAX_FRAMES_PER_WRITE:
            try:
                item = self.queue.get_nowait()
            except Empty:
                break
            if isinstance(item, _Close):
                closing = item
                break
            frames.append(item)
        return b"".join(frames), closing

    def _send_loop(self) -> None:
        interval = self.settings.ping_interval
        pong_wait = max(1.0, self.settings.pong_timeout - interval)
        next_ping = time.monotonic() + interval
        pong_deadline: float | None = None
        try:
            while True:
                wake_at = pong_deadline if pong_deadline is not None else next_ping
                try:
                    item = self.queue.get(timeout=max(0.0, wake_at - time.monotonic()))
                except Empty:
                    item = None
                if isinstance(item, _Close):
                    self._finish(item.code, item.reason)
                    return
                if item is not None:
                    data, closing = self._take_queued(item)
                    self._write(data)
                    if closing is not None:
                        self._finish(closing.code, closing.reason)
                        return
                    continue
                now = time.monotonic()
                if pong_deadline is not None and now >= pong_deadline:
                    if not self.wire.pong_received:
                        self._abandon(POLICY_VIOLATION, "Ping/Pong timeout")
                        return
                    pong_deadline = None
                if now >= next_ping:
                    self._write(self.wire.ping())
                    pong_deadline = now + pong_wait
                    next_ping = now + interval
        except gevent.Timeout:
            # The peer stopped reading mid-frame: a close frame can no longer be framed.
            self._abandon(None, None)
        except (ConnectionClosed, OSError):
            self._abandon(None, None)

    def close(self, code: int | None, reason: str | None) -> None:
        """Close once, without blocking the caller (typically the listener fanning out).

        Only the sender greenlet writes to the socket: pending frames are discarded and the
        sender writes the close frame after the frame it may be writing now.
        """
        if not self.open:
            return
        self.open = False
        self._on_closed(self)
        while True:
            try:
                self.queue.get_nowait()
            except Empty:
                break
        if self.sender.dead:
            self._finish(None, None)
        else:
            self.queue.put_nowait(_Close(code, reason))

    def _abandon(self, code: int | None, reason: str | None) -> None:
        """Called by the sender itself when the connection cannot go on."""
        if self.open:
            self.open = False
            self._on_closed(self)
        self._finish(code, reason)

    def _finish(self, code: int | None, reason: str | None) -> None:
        if code is not None and self.wire.connected:
            with contextlib.suppress(gevent.Timeout, ConnectionClosed, OSError):
                self._write(self.wire.close_frame(code, reason or ""))
        self.wire.release()
        self.finished.set()


@dataclass(frozen=True)
class _Close:
    code: int | None
    reason: str | None


class Hub:
    """Clients of this process, the listener feeding them, and the presence row counting them."""

    def __init__(self, settings: HubSettings | None = None):
        self.settings = settings or HubSettings()
        self.clients: set[ClientConnection] = set()
        self.process_id: str | None = None
        self.database_url: str | None = None
        self.listening = False
        self.started = False
        self.stopping = False
        self._presence: PresenceRecorder | None = None
        self._listener: Listener | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self._channels: dict[str, Callable[[str], None]] = {CHANNEL: self.broadcast}
        self._listening_watchers: list[Callable[[bool], None]] = []

    def watch(self, channel: str, on_notify, on_listening) -> None:
        """Also LISTEN on ``channel``: ``on_notify(payload)`` per notification, and
        ``on_listening(bool)`` whenever the listener (re)connects or loses the database."""
        self._channels[channel] = on_notify
        if on_listening not in self._listening_watchers:
            self._listening_watchers.append(on_listening)

    def _listener_state(self, listening: bool, reconnected: bool) -> None:
        self.listening = listening
        for watcher in self._listening_watchers:
            watcher(listening)
        if reconnected:
            self.announce(
                "events_reconnected",
                "Live events resumed after a database reconnect; re-read state over REST",
            )

    # -- lifecycle -------------------------------------------------------------------------
    def ensure_started(self, settings: Settings) -> None:
        """Start the listener and presence greenlets in this process (once, after fork)."""
        if self.started:
            return
        check_library_version()
        self.started = True
        self.settings = HubSettings.from_settings(settings)
        self.database_url = settings.database_url
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._listener = Listener(self.database_url, self._channels, self._listener_state)
        self._presence = PresenceRecorder(self.process_id, lambda: len(self.clients))
        self._greenlets = [
            gevent.spawn(self._listener.run_forever),
            gevent.spawn(self._presence.run_forever),
        ]

    def shutdown(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> None:
        """Close every client (1001 by default) and stop the background greenlets."""
        if self.stopping:
            return
        self.stopping = True
        if self._listener is not None:
            self._listener.stop()
        closing = list(self.clients)
        for client in closing:
            client.close(code, reason)
        gevent.killall(self._greenlets, block=False)
        # A quick shutdown exits right after this returns: let the close frames go out first.
        deadline = time.monotonic() + 2.0
        for client in closing:
            client.finished.wait(timeout=max(0.0, deadline - time.monotonic()))
        if self._presence is not None:
            self._presence.stop()

    # -- clients -------------------------------------------------------------------------
    def attach(self, ws) -> ClientConnection:
        client = ClientConnection(ws, self.settings, self._detached)
        self.clients.add(client)
        self._note_presence()
        return client

    def _detached(self, client: ClientConnection) -> None:
        self.clients.discard(client)
        self._note_presence()

    def _note_presence(self) -> None:
        if self._presence is not None:
            self._presence.changed()

    def serve(self, ws) -> None:
        """Run one client connection until it closes (the WebSocket request greenlet)."""
        client = self.attach(ws)
        try:
            while client.open:
                raw = ws.receive()
                if raw is None:
                    continue
                self.handle_message(client, raw)
        except ConnectionClosed:
            pass
        finally:
            client.close(None, None)
            # The socket is released only once our close has been written.
            client.finished.wait(timeout=self.settings.write_timeout + 2)

    def handle_message(self, client: ClientConnection, raw) -> None:
        try:
            message_type, data = parse_client_message(raw)
            if message_type == "ping":
                reply = envelope("pong", {})
            elif message_type == "pong":
                return
            elif message_type == "subscribe":
                client.subscription = client.subscription.narrowed(data)
                reply = envelope("subscribed", client.subscription.describe())
            else:
                client.subscription = client.subscription.widened(data)
                reply = envelope("unsubscribed", client.subscription.describe())
        except InvalidInput as exc:
            reply = error_message(exc.message, exc.details or exc.message)
        if not client.offer(text_frame(reply)):
            client.close(TRY_AGAIN_LATER, "send queue full")

    def broadcast(self, payload: str) -> int:
        """Offer one published event to every interested client; returns how many got it."""
        WS_EVENTS.inc()
        if not self.clients:
            return 0  # nobody to deliver to: not even worth parsing
        try:
            event = Event.from_payload(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("dropping malformed event payload: %.200s", payload)
            return 0
        frame = text_frame(event.frame)
        delivered = 0
        for client in list(self.clients):
            if not client.open or not client.subscription.matches(event):
                continue
            if client.offer(frame):
                delivered += 1
            else:
                WS_DROPPED.inc()
                client.close(TRY_AGAIN_LATER, "send queue full: client too slow")
        return delivered

    def announce(self, status: str, message: str) -> None:
        """A local system_status to this process's clients (not an event of the database)."""
        self.broadcast(
            envelope("system_status", {"status": status, "message": message, "metadata": {}})
        )


hub = Hub()
