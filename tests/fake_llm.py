"""A fake OpenAI-compatible chat-completions server for the LLM gateway tests.

Behaviour per model name: ``approve-*`` answers a valid APPROVE, ``reject-*`` a valid REJECT,
``garbage-*`` something that is not the JSON asked for, ``down-*`` HTTP 500, ``slow-*`` sleeps
past the client's timeout. ``delay`` makes every answer take that long (a slow real model);
``in_flight`` counts requests being answered right now. Every request is recorded.

``/v1/embeddings`` answers with a bag of words hashed into 512 dimensions, after mapping a few
synonyms onto one word (so "plunge" lands near "crash": meaning the words alone would miss).
The same model-name prefixes fail it the same ways, plus ``limited-*`` (HTTP 429) and
``short-*`` (one vector fewer than the inputs).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMBEDDING_DIMENSIONS = 512
SYNONYMS = {"plunge": "crash", "plunged": "crash", "selloff": "crash", "capitulation": "crash",
            "rally": "surge", "rallied": "surge", "moon": "surge"}  # fmt: skip


def fake_embedding(text: str) -> list[float]:
    """A deterministic bag-of-words vector: texts sharing (synonym-mapped) words are close."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    for word in re.findall(r"[a-z]+", text.lower()):
        word = SYNONYMS.get(word, word)
        slot = int(hashlib.sha256(word.encode()).hexdigest(), 16) % EMBEDDING_DIMENSIONS
        vector[slot] += 1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm if any(vector) else 1.0 / EMBEDDING_DIMENSIONS for x in vector]


class FakeLLM:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.in_flight = 0
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                return None

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                fake.in_flight += 1
                try:
                    self._answer(body)
                finally:
                    fake.in_flight -= 1

            def _answer(self, body):
                if self.path.endswith("/embeddings"):
                    self._embeddings(body)
                    return
                time.sleep(fake.delay)
                fake.headers.append({key.lower(): value for key, value in self.headers.items()})
                model = body["model"]
                if model.startswith("down-"):
                    self._send(
                        500, {"error": {"message": "upstream exploded", "type": "server_error"}}
                    )
                    return
                if model.startswith("slow-"):
                    time.sleep(3)
                if model.startswith("garbage-"):
                    content = "I think you should probably buy, maybe."
                else:
                    decision = "APPROVE" if model.startswith("approve-") else "REJECT"
                    content = json.dumps(
                        {"decision": decision, "confidence": 0.82, "reasoning": f"{model} says so"}
                    )
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": 1700000000,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 1200,
                            "completion_tokens": 80,
                            "total_tokens": 1280,
                        },
                    },
                )

            def _embeddings(self, body):
                time.sleep(fake.delay)
                model, inputs = body["model"], body["input"]
                inputs = [inputs] if isinstance(inputs, str) else inputs
                if model.startswith("down-"):
                    self._send(500, {"error": {"message": "embedder exploded"}})
                    return
                if model.startswith("limited-"):
                    self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}})
                    return
                if model.startswith("slow-"):
                    time.sleep(3)
                data = [
                    {"object": "embedding", "index": index, "embedding": fake_embedding(text)}
                    for index, text in enumerate(inputs)
                ]
                if model.startswith("garbage-"):
                    data = [{"object": "embedding", "index": 0, "embedding": "not a vector"}]
                if model.startswith("short-"):
                    data = data[:-1]
                self._send(200, {"object": "list", "data": data, "model": model,
                                 "usage": {"prompt_tokens": 8, "total_tokens": 8}})  # fmt: skip

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def models_asked(self) -> list[str]:
        return [request["model"] for request in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
