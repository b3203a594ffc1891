"""WebSocket protocol rules that need no server: event routing keys, subscriptions, requests."""

from __future__ import annotations

import json
import uuid

import pytest

from app.errors import InvalidInput
from app.realtime.protocol import Event, Subscription, envelope, parse_client_message

SESSION = str(uuid.uuid4())


def event(event_type="order_update", symbol="BTC/USDT", session_id=SESSION, metadata=False):
    data = {"symbol": symbol, "session_id": session_id}
    payload = {
        "type": event_type,
        "timestamp": "t",
        "data": {"metadata": data} if metadata else data,
    }
    return Event.from_payload(json.dumps(payload))


def test_event_routing_keys_come_from_data_or_metadata():
    direct = event()
    nested = event("system_status", metadata=True)
    assert (direct.symbol, direct.session_id) == ("BTC/USDT", SESSION)
    assert (nested.symbol, nested.session_id) == ("BTC/USDT", SESSION)
    assert direct.frame.startswith('{"type": "order_update"')


def test_default_subscription_receives_everything():
    assert Subscription().matches(event())
    assert Subscription().matches(event("error", symbol=None, session_id=None))


def test_subscribe_narrows_each_dimension():
    subscription = Subscription().narrowed({"types": ["trade"], "symbols": ["eth-usdt"]})
    assert subscription.matches(event("trade", symbol="ETH/USDT"))
    assert not subscription.matches(event("trade", symbol="BTC/USDT"))
    assert not subscription.matches(event("order_update", symbol="ETH/USDT"))
    by_session = Subscription().narrowed({"session_id": SESSION.upper()})
    assert by_session.session_id == SESSION
    assert by_session.matches(event())
    assert not by_session.matches(event(session_id=str(uuid.uuid4())))


def test_events_without_symbol_or_session_reach_symbol_subscribers():
    subscription = Subscription().narrowed({"symbols": ["BTC/USDT"], "session_id": SESSION})
    assert subscription.matches(event("system_status", symbol=None, session_id=None))


def test_unsubscribe_clears_named_dimensions_or_everything():
    narrowed = Subscription().narrowed({"types": ["trade"], "symbols": ["BTC/USDT"]})
    assert narrowed.widened({"symbols": []}) == Subscription(types=frozenset({"trade"}))
    assert narrowed.widened({}) == Subscription()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"types": ["nope"]}, "types"),
        ({"types": "trade"}, "types"),
        ({"symbols": ["BTC"]}, "symbols"),
        ({"session_id": "x"}, "session_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_subscriptions_are_refused(data, field):
    with pytest.raises(InvalidInput) as raised:
        Subscription().narrowed(data)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("{oops", "invalid message"),
        ("[1]", "invalid message"),
        ('{"data": {}}', "invalid message"),
        ('{"type": "dance"}', "unknown message type"),
        ('{"type": "subscribe", "data": [1]}', "invalid message"),
    ],
)
def test_bad_client_messages(raw, error):
    with pytest.raises(InvalidInput) as raised:
        parse_client_message(raw)
    assert raised.value.message == error


def test_client_message_defaults_to_empty_data():
    assert parse_client_message('{"type": "ping"}') == ("ping", {})


def test_envelope_shape():
    message = json.loads(envelope("pong", {}))
    assert list(message) == ["type", "timestamp", "data"]
    assert message["timestamp"].endswith("Z")


def test_the_websocket_adapter_accepts_only_the_versions_whose_internals_it_knows(monkeypatch):
    from app.realtime import wire

    assert wire.check_library_version().startswith("1.1")
    monkeypatch.setattr(wire, "version", lambda name: "2.0.0")
    with pytest.raises(RuntimeError, match=r"simple-websocket 2\.0\.0 is not supported"):
        wire.check_library_version()
