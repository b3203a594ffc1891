"""WebSocket message shapes: server envelopes, parsed events, subscriptions, client requests."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from app.errors import InvalidInput
from app.symbols import normalize_symbol

WS_PATH = "/api/v1/ws"
EVENT_TYPES = (
    "position_update",
    "order_update",
    "trade",
    "agent_status",
    "system_status",
    "error",
    "decision",
)
CLIENT_TYPES = ("ping", "pong", "subscribe", "unsubscribe")
FILTER_KEYS = ("types", "symbols", "session_id")


def now_stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(message_type: str, data: dict) -> str:
    """A server message as the spec shapes it: ``{"type", "timestamp", "data"}``."""
    return json.dumps(
        {"type": message_type, "timestamp": now_stamp(), "data": data}, separators=(",", ":")
    )


def error_message(error: str, details: str, severity: str = "low") -> str:
    return envelope("error", {"error": error, "details": details, "severity": severity})


@dataclass(frozen=True)
class Event:
    """A published event: its routing keys and the frame every client receives, encoded once."""

    type: str
    symbol: str | None
    session_id: str | None
    frame: str

    @classmethod
    def from_payload(cls, payload: str) -> Event:
        message = json.loads(payload)
        data = message.get("data") or {}
        metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
        return cls(
            type=message["type"],
            symbol=data.get("symbol") or metadata.get("symbol"),
            session_id=data.get("session_id") or metadata.get("session_id"),
            frame=payload,
        )


@dataclass(frozen=True)
class Subscription:
    """What a client wants; ``None`` in a dimension means everything."""

    types: frozenset[str] | None = None
    symbols: frozenset[str] | None = None
    session_id: str | None = None

    def matches(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        # Events that carry no symbol or session (engine status, config changes) concern everyone.
        if (
            self.symbols is not None
            and event.symbol is not None
            and event.symbol not in self.symbols
        ):
            return False
        return not (
            self.session_id is not None
            and event.session_id is not None
            and event.session_id != self.session_id
        )

    def narrowed(self, data: dict) -> Subscription:
        """Apply a ``subscribe``: each dimension given replaces the current one."""
        _refuse_unknown_keys(data)
        updated = self
        if "types" in data:
            types = _string_list(data["types"], "types")
            unknown = sorted(set(types) - set(EVENT_TYPES))
            if unknown:
                raise InvalidInput(
                    "invalid subscription",
                    details=f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}",
                    field="types",
                )
            updated = replace(updated, types=frozenset(types))
        if "symbols" in data:
            symbols = [
                normalize_symbol(s, "symbols") for s in _string_list(data["symbols"], "symbols")
            ]
            updated = replace(updated, symbols=frozenset(symbols))
        if "session_id" in data:
            raw = data["session_id"]
            try:
                session = str(uuid.UUID(str(raw))) if raw is not None else None
            except ValueError:
                raise InvalidInput("invalid session_id format", field="session_id") from None
            updated = replace(updated, session_id=session)
        return updated

    def widened(self, data: dict) -> Subscription:
        """Apply an ``unsubscribe``: no data clears every filter, else the dimensions named."""
        _refuse_unknown_keys(data)
        if not data:
            return Subscription()
        return replace(
            self,
            types=None if "types" in data else self.types,
            symbols=None if "symbols" in data else self.symbols,
            session_id=None if "session_id" in data else self.session_id,
        )

    def describe(self) -> dict:
        return {
            "types": sorted(self.types) if self.types is not None else None,
            "symbols": sorted(self.symbols) if self.symbols is not None else None,
            "session_id": self.session_id,
        }


def _refuse_unknown_keys(data: dict) -> None:
    unknown = sorted(set(data) - set(FILTER_KEYS))
    if unknown:
        raise InvalidInput(
            "invalid subscription",
            details=f"unknown keys {unknown}; use {', '.join(FILTER_KEYS)}",
            field=unknown[0],
        )


def _string_list(value, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidInput("invalid subscription", details="must be a list of strings", field=field)
    return value


def parse_client_message(raw: str | bytes) -> tuple[str, dict]:
    """Validate a client frame; returns (type, data) or raises InvalidInput."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("invalid message", details="frames must be JSON objects") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidInput("invalid message", details='expected {"type": ..., "data": {...}}')
    message_type = message["type"]
    if message_type not in CLIENT_TYPES:
        raise InvalidInput(
            "unknown message type",
            details=f"{message_type!r} is not one of {', '.join(CLIENT_TYPES)}",
        )
    data = message.get("data") or {}
    if not isinstance(data, dict):
        raise InvalidInput("invalid message", details="data must be an object")
    return message_type, data
