"""The bare comparison for bench/ws_fanout.py: flask-sock fed by one LISTEN connection.

One greenlet LISTENs on the project's event channel and puts each payload on every client's
queue; each client's handler sends what its queue holds. No subscriptions, filters, pings,
presence or access control: what the project's hub adds is measured against this.

    DATABASE_URL=... gunicorn -k gevent -w 1 -b 127.0.0.1:8091 --chdir bench bare_ws:app
"""

from __future__ import annotations

import os
import select

import gevent
import psycopg2
from flask import Flask
from flask_sock import Sock
from gevent.queue import Queue
from psycogreen.gevent import patch_psycopg

patch_psycopg()

CHANNEL = "cryptofunk_events"
app = Flask(__name__)
sock = Sock(app)
clients: set[Queue] = set()


def listen() -> None:
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    conn.autocommit = True
    conn.cursor().execute(f"LISTEN {CHANNEL}")
    while True:
        select.select([conn], [], [])
        conn.poll()
        while conn.notifies:
            payload = conn.notifies.pop(0).payload
            for queue in clients:
                queue.put(payload)


gevent.spawn(listen)


@sock.route("/api/v1/ws")
def events(ws):
    queue: Queue = Queue()
    clients.add(queue)
    try:
        while True:
            ws.send(queue.get())
    finally:
        clients.discard(queue)


@app.get("/health")
def health():
    return {"status": "healthy"}
