"""Recording engine, configuration and failure events; a trigger turns each row into a NOTIFY.

Row changes of orders, trades, positions, agents, sessions and decisions publish themselves
(see migration 0002); this module is for events that are not the change of such a row.
"""

from __future__ import annotations

from app.models import SystemEvent

SEVERITIES = ("low", "medium", "high", "critical")


def publish_status(status: str, message: str, **metadata) -> None:
    """A ``system_status`` event such as ``engine_started``, in the caller's transaction."""
    SystemEvent.create(
        type="system_status",
        data={"status": status, "message": message, "metadata": _plain(metadata)},
    )


def publish_error(error: str, details: str, severity: str = "high", **metadata) -> None:
    """An ``error`` event: something failed that an operator should see."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    SystemEvent.create(
        type="error",
        data={
            "error": error,
            "details": details,
            "severity": severity,
            "metadata": _plain(metadata),
        },
    )


def _plain(metadata: dict) -> dict:
    return {
        key: value
        if isinstance(value, (str, int, float, bool, type(None), dict, list))
        else str(value)
        for key, value in metadata.items()
    }
