"""``python -m app keys create|list|revoke``: manage API keys from a shell on the server."""

from __future__ import annotations

import argparse
import sys

from app.access import keys
from app.access.roles import ROLE_ORDER
from app.errors import CryptoFunkError
from app.models import format_timestamp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``keys`` sub-commands."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="create|list|revoke")
    create = actions.add_parser("create", help="issue a key (printed once, on the last line)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=[str(role) for role in ROLE_ORDER])
    create.add_argument("--rate-limit", help="the key's own general limit, e.g. 6000/minute")
    create.add_argument("--write-limit", help="the key's own write limit, e.g. 600/minute")
    create.add_argument("--ws-connections", type=int, help="WebSocket connections at once")
    actions.add_parser("list", help="active keys: name, role, created, last used, limits")
    revoke = actions.add_parser("revoke", help="revoke a key by name (at once, everywhere)")
    revoke.add_argument("name")


def run(args: argparse.Namespace, admin_key: str | None) -> int:
    """Carry out one sub-command against the prepared database; the exit status."""
    try:
        if args.action == "create":
            key, raw = keys.create_key(
                keys.KeyRequest(
                    name=args.name,
                    role=args.role,
                    rate_limit=args.rate_limit,
                    write_limit=args.write_limit,
                    ws_connections=args.ws_connections,
                )
            )
            print(f"Created key {key.name!r} with the {key.role} role. It is shown once, below;")
            print("only its hash is stored. Send it as X-API-Key: <key> or")
            print("Authorization: Bearer <key>.")
            print(raw)
        elif args.action == "list":
            print(describe(keys.list_keys()))
        else:
            keys.revoke_key(args.name, admin_key)
            print(f"Revoked key {args.name!r}; it no longer works anywhere.")
    except CryptoFunkError as error:
        print(f"error: {error.message}: {error.details or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


def describe(active: list) -> str:
    """A table of keys for the terminal."""
    if not active:
        return "no active keys"
    rows = [("NAME", "ROLE", "CREATED", "LAST USED", "LIMITS")]
    for key in active:
        limits = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("general", key.rate_limit),
                ("write", key.write_limit),
                ("ws", key.ws_connections),
            )
            if value
        )
        rows.append(
            (
                key.name,
                key.role,
                format_timestamp(key.created_at),
                format_timestamp(key.last_used_at) if key.last_used_at else "never",
                limits or "defaults",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
