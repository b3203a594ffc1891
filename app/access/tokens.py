"""Short-lived signed tokens (JWT, HS256) issued to a key, e.g. for a browser's WebSocket."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import jwt

from app.access.roles import Identity
from app.db import db

ALGORITHM = "HS256"
SECRET_NAME = "jwt_signing_key"
REQUIRED_CLAIMS = ("sub", "role", "kid", "iat", "exp")


class InvalidToken(Exception):
    """The token is expired, tampered with, malformed or not ours; the message says which."""


def stored_signing_secret() -> str:
    """The signing key kept in the database, generated once for every process to share."""
    db.execute_sql(
        "INSERT INTO server_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
        (SECRET_NAME, secrets.token_urlsafe(48)),
    )
    row = db.execute_sql("SELECT value FROM server_secrets WHERE name = %s", (SECRET_NAME,))
    return row.fetchone()[0]


def looks_like_token(credential: str) -> bool:
    """Three dot-separated parts whose first is a JSON header naming an ``alg``: a JWT (valid
    or not), not an API key."""
    if credential.count(".") != 2:
        return False
    header = credential.split(".", 1)[0]
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


def issue(identity: Identity, secret: str, lifetime_seconds: float) -> tuple[str, datetime]:
    """A token for ``identity``'s key; returns it and when it expires."""
    now = datetime.now(UTC).replace(microsecond=0)
    expires_at = now + timedelta(seconds=lifetime_seconds)
    claims = {
        "sub": identity.name,
        "role": str(identity.role),
        "kid": identity.key_id,
        "iat": now,
        "exp": expires_at,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at


def verify(token: str, secret: str) -> dict:
    """The claims of a valid token; :class:`InvalidToken` otherwise (only HS256 is accepted,
    so ``alg: none`` and algorithm swaps fail)."""
    try:
        return jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": list(REQUIRED_CLAIMS)}
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("token signature does not match") from None
    except jwt.PyJWTError as error:
        raise InvalidToken(f"invalid token: {error}") from None
