"""The bare comparison for bench/ws_fanout.py: flask-sock fed by one LISTEN connection.

One greenlet LISTENs on the project's event channel, frames each payload once and writes the
frame to every client's socket in turn; each client's handler only waits for it to go away.
No subscriptions, filters, queues, pings, presence or access control: the leanest correct
fan-out on this stack, which the project's hub is measured against.

    DATABASE_URL=... gunicorn -k gevent -w 1 -b 127.0.0.1:8091 --chdir bench bare_ws:app
"""

from __future__ import annotations

import os
import select
import struct

import gevent
import psycopg2
from flask import Flask
from flask_sock import Sock
from psycogreen.gevent import patch_psycopg

patch_psycopg()

CHANNEL = "cryptofunk_events"
app = Flask(__name__)
sock = Sock(app)
clients: set = set()


def text_frame(payload: bytes) -> bytes:
    """An unmasked final text frame (RFC 6455), as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes([0x81, size]) + payload
    if size < 65536:
        return bytes([0x81, 126]) + struct.pack(">H", size) + payload
    return bytes([0x81, 127]) + struct.pack(">Q", size) + payload


def listen() -> None:
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    conn.cursor().execute(f"LISTEN {CHANNEL}")
    while True:
        select.select([conn], [], [])
        conn.poll()
        while conn.notifies:
            frame = text_frame(conn.notifies.pop(0).payload.encode())
            for ws in list(clients):
                try:
                    ws.sock.sendall(frame)
                except OSError:
                    clients.discard(ws)


gevent.spawn(listen)


@sock.route("/api/v1/ws")
def events(ws):
    clients.add(ws)
    try:
        while ws.receive() is not None:
            pass
    finally:
        clients.discard(ws)


@app.get("/health")
def health():
    return {"status": "healthy"}
