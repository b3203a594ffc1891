"""Hostile bodies and query strings: each is a 400 or 413 JSON answer, and nothing is written."""

from __future__ import annotations

import io

import pytest

from app.models import Agent, Decision, MarketTick, Order
from tests.factories import make_session

ORDER = '{"symbol": "BTC/USDT", "side": "BUY", "type": "MARKET", "quantity": %s}'


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (ORDER % ("1" * 5000), "4300"),  # an integer literal past Python's conversion limit
        ("[" * 1000 + "]" * 1000, "nested too deeply"),
        ('{"a": ' * 1000 + "1" + "}" * 1000, "nested too deeply"),
    ],
)
def test_pathological_json_is_400(client, body, expected):
    make_session()
    response = client.post("/api/v1/orders", data=body, content_type="application/json")
    assert response.status_code == 400, response.data[:200]
    assert response.json["error"] == "malformed JSON"
    assert expected in response.json["details"]
    assert Order.select().count() == 0


@pytest.mark.parametrize("text", ["a\u0000b", "\ud800"])
def test_text_postgres_cannot_store_is_400_naming_the_field(client, text):
    response = client.post(
        "/api/v1/decisions",
        json={
            "agent_name": "outside-agent", "symbol": "BTC/USDT", "decision_type": "signal",
            "decision": "BUY", "confidence": 0.7, "model": "m", "reasoning": text,
        },
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json["field"] == "reasoning"
    assert Decision.select().count() == 0
    assert Agent.select().count() == 0


def test_a_nul_in_a_query_filter_is_400(client):
    response = client.get("/api/v1/decisions?model=a%00b")
    assert response.status_code == 400
    assert response.json["field"] == "model"


def test_a_chunked_body_over_the_limit_is_413_not_truncated(client):
    payload = b'{"symbol": "BTC/USDT", "price": 1, "pad": "' + b"x" * 70_000 + b'"}'
    response = client.post(
        "/api/v1/market/prices",
        input_stream=io.BytesIO(payload),
        content_type="application/json",
        # What gunicorn hands over for Transfer-Encoding: chunked: no Content-Length.
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )
    assert response.status_code == 413
    assert response.json["error"] == "request body too large"
    assert MarketTick.select().count() == 0


def test_a_chunked_body_under_the_limit_is_read_whole(client):
    response = client.post(
        "/api/v1/market/prices",
        input_stream=io.BytesIO(b'{"symbol": "BTC/USDT", "price": 101.5}'),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
    )
    assert response.status_code == 201, response.json


# -- the malformed-input matrix: every write route of the document x every malformed body ----

MALFORMED = {
    "huge integer": ('{"x": %s}' % ("9" * 5000), (400,)),
    "deep nesting": ("[" * 1000 + "]" * 1000, (400,)),
    "deep object": ('{"a": ' * 1000 + "1" + "}" * 1000, (400,)),
    "nul in text": ('{"name": "a\\u0000b", "symbol": "a\\u0000b"}', (400,)),
    "lone surrogate": ('{"name": "\\ud800", "symbol": "\\ud800"}', (400,)),
    "not json": ("{'single': quotes}", (400,)),
    "truncated": ('{"symbol": "BTC/USDT", ', (400,)),
    "array": ("[1, 2, 3]", (400,)),
    "string": ('"text"', (400,)),
    "number": ("42", (400,)),
    "null": ("null", (400,)),
    "NaN": ('{"price": NaN, "quantity": NaN, "initial_capital": NaN}', (400,)),
    "Infinity": ('{"price": Infinity, "initial_capital": -Infinity}', (400,)),
    "wrong types": ('{"symbol": 1, "side": [], "name": {}, "role": 2, "price": "x"}', (400,)),
    "unknown field": ('{"definitely_not_a_field": 1}', (400,)),
    "invalid utf-8": (b'{"symbol": "\xff\xfe"}', (400,)),
    "too large": ('{"pad": "' + "x" * 70_000 + '"}', (413,)),
}


def write_operations(app) -> list[tuple[str, str]]:
    document = app.test_client().get("/api/v1/openapi.json").json
    return [
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if method in ("post", "patch", "put")
    ]


def table_counts() -> dict[str, int]:
    from app.db import db

    tables = ("orders", "trades", "positions", "trading_sessions", "llm_decisions", "agents",
              "market_ticks", "config_overrides", "api_keys")  # fmt: skip
    return {t: db.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_every_write_route_refuses_every_malformed_body_and_writes_nothing(client, app):
    make_session()
    before = table_counts()
    operations = write_operations(app)
    assert len(operations) >= 11
    for path, method in operations:
        concrete = path.replace("{name}", "matrix-agent")
        for label, (body, statuses) in MALFORMED.items():
            raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
            response = client.open(concrete, method=method.upper(), data=raw,
                                   content_type="application/json")  # fmt: skip
            where = f"{method.upper()} {path} with {label}: {response.status_code}"
            if path.endswith("/auth/token") and response.status_code == 200:
                continue  # takes no body: nothing of it is read, nothing is written
            assert response.status_code in statuses, where + f" {response.data[:200]!r}"
            assert response.is_json and response.json["error"], where
    assert table_counts() == before
