"""Benchmark load: N lean WebSocket clients in one gevent process, timing event receipt.

Each client is a raw socket with a minimal RFC 6455 frame reader (server frames are unmasked),
so the load generator costs far less CPU than the server it measures; it answers pings like any
client. Driven by bench/ws_fanout.py over stdin/stdout: prints {"ready": n} once connected,
waits for a line on stdin (sent when the driver has finished inserting), then prints the results.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import gevent  # noqa: E402

SENT_AT = re.compile(rb'"t": ([0-9.]+)')
BENCH = b'"status": "bench"'


class Results:
    def __init__(self, clients: int):
        self.latencies: list[float] = []
        self.received = [0] * clients
        self.events = [0] * clients  # every text frame, bench or not
        self.connected = 0
        self.closed_codes: list[int] = []
        self.connect_errors: list[str] = []


def handshake(host: str, port: int, path: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        response += chunk
    if not response.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(response.split(b"\r\n")[0].decode())
    return sock, response.split(b"\r\n\r\n", 1)[1]


def masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def run_client(url: str, index: int, results: Results) -> None:
    parsed = urlparse(url)
    try:
        path = f"{parsed.path}?{parsed.query}" if parsed.query else parsed.path  # ?token=...
        sock, buffer = handshake(parsed.hostname, parsed.port, path)
    except (OSError, ConnectionError) as exc:
        results.connect_errors.append(str(exc))
        return
    results.connected += 1
    while True:
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                (length,) = struct.unpack(">H", buffer[2:4])
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                (length,) = struct.unpack(">Q", buffer[2:10])
                offset = 10
            if len(buffer) < offset + length:
                break
            payload = buffer[offset : offset + length]
            buffer = buffer[offset + length :]
            if opcode == 0x1:
                results.events[index] += 1
            if opcode == 0x1 and BENCH in payload:
                results.latencies.append(time.time() - float(SENT_AT.search(payload).group(1)))
                results.received[index] += 1
            elif opcode == 0x9:
                sock.sendall(masked(0xA, payload))
            elif opcode == 0x8:
                results.closed_codes.append(
                    struct.unpack(">H", payload[:2])[0] if payload else 1005
                )
                return
        chunk = sock.recv(65536)
        if not chunk:
            results.closed_codes.append(1006)
            return
        buffer += chunk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, required=True)
    args = parser.parse_args()
    results = Results(args.clients)
    greenlets = []
    for index in range(args.clients):
        greenlets.append(gevent.spawn(run_client, args.url, index, results))
        if index % 50 == 49:
            gevent.sleep(0.05)  # connect in waves, as real dashboards do
    deadline = time.time() + 60
    while results.connected + len(results.connect_errors) < args.clients and time.time() < deadline:
        gevent.sleep(0.1)
    print(json.dumps({"ready": results.connected}), flush=True)
    gevent.get_hub().threadpool.spawn(sys.stdin.readline).get()
    gevent.killall(greenlets, timeout=5)
    print(
        json.dumps(
            {
                "latencies": results.latencies,
                "received": results.received,
                "events": results.events,
                "closed_codes": results.closed_codes,
                "connect_errors": results.connect_errors[:5],
                "connected": results.connected,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
