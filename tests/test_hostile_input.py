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
