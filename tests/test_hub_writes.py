"""The hub's write path on real sockets: events written at once, the rest queued, in order."""

from __future__ import annotations

import gevent
from gevent import socket as gsocket
from wsproto import ConnectionType
from wsproto.connection import Connection

from app.realtime.frames import text_frame
from app.realtime.hub import ClientConnection, HubSettings


class SocketOnlyWebSocket:
    """What ClientConnection reaches through Wire: a socket, wsproto, simple-websocket's flags."""

    def __init__(self, sock):
        self.sock = sock
        self.ws = Connection(ConnectionType.SERVER)
        self.connected = True
        self.pong_received = True
        self.event = gevent.event.Event()


def _read_all(sock, expected: int) -> bytes:
    received = bytearray()
    while len(received) < expected:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return bytes(received)


def test_frames_arrive_whole_and_in_order_when_the_socket_fills_up():
    server_side, reader = gsocket.socketpair()
    server_side.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, 4096)
    client = ClientConnection(SocketOnlyWebSocket(server_side), HubSettings(send_queue=4096),
                              on_closed=lambda _: None)  # fmt: skip
    frames = [text_frame(f'{{"n": {n}, "pad": "{"x" * (n % 700)}"}}') for n in range(2000)]
    expected = b"".join(frames)
    receiving = gevent.spawn(_read_all, reader, len(expected))
    written_at_once = 0
    for n, frame in enumerate(frames):
        queued_before = client.queue.qsize()
        assert client.offer(frame)
        written_at_once += client.queue.qsize() == queued_before
        if n % 200 == 199:
            gevent.sleep(0)  # the reader drains and the sender writes meanwhile
    # Some went straight to the socket, and the buffer filled up so that others were queued.
    assert 0 < written_at_once < len(frames)
    assert receiving.get(timeout=20) == expected
    client.close(None, None)
    server_side.close()
    reader.close()


def test_nothing_is_written_past_a_write_in_progress():
    server_side, reader = gsocket.socketpair()
    client = ClientConnection(SocketOnlyWebSocket(server_side), HubSettings(),
                              on_closed=lambda _: None)  # fmt: skip
    client.writing = True  # as if the sender were inside a write
    assert client.offer(text_frame('{"n": 1}'))
    assert client.queue.qsize() == 1
    client.writing = False
    expected = text_frame('{"n": 1}')
    assert gevent.spawn(_read_all, reader, len(expected)).get(timeout=5) == expected
    client.close(None, None)
    server_side.close()
    reader.close()


def test_a_frame_never_jumps_ahead_of_queued_ones():
    server_side, reader = gsocket.socketpair()
    client = ClientConnection(SocketOnlyWebSocket(server_side), HubSettings(),
                              on_closed=lambda _: None)  # fmt: skip
    first, second = text_frame('{"n": 1}'), text_frame('{"n": 2}')
    client.queue.put_nowait(first)  # e.g. the rest of a partial write; the sender has not run
    assert client.offer(second)
    expected = first + second
    assert gevent.spawn(_read_all, reader, len(expected)).get(timeout=5) == expected
    client.close(None, None)
    server_side.close()
    reader.close()
