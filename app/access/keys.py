"""API keys: issued once, stored as a hash, looked up by hash, revoked by name."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from peewee import BlobField, IntegerField, TextField, UUIDField
from playhouse.postgres_ext import DateTimeTZField

from app.access.limits import parse_limit
from app.access.roles import Identity, Role
from app.db import db
from app.errors import Conflict, InvalidInput, NotFound
from app.models import BaseModel, utcnow

KEY_PREFIX = "cf_"
BOOTSTRAP_NAME = "bootstrap"
FIRST_ADMIN_NAME = "admin"
MIN_BOOTSTRAP_LENGTH = 32
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_WS_CONNECTIONS = 10_000


class ApiKey(BaseModel):
    id = UUIDField(primary_key=True, default=uuid.uuid4)
    name = TextField()
    role = TextField()
    key_hash = BlobField()
    rate_limit = TextField(null=True)
    write_limit = TextField(null=True)
    ws_connections = IntegerField(null=True)
    created_at = DateTimeTZField(default=utcnow)
    last_used_at = DateTimeTZField(null=True)
    revoked_at = DateTimeTZField(null=True)

    class Meta:
        table_name = "api_keys"

    def identity(self, via: str = "key") -> Identity:
        return Identity(
            key_id=str(self.id),
            name=self.name,
            role=Role(self.role),
            rate_limit=self.rate_limit,
            write_limit=self.write_limit,
            ws_connections=self.ws_connections,
            via=via,
        )


@dataclass(frozen=True)
class KeyRequest:
    """What a new key is issued with; limits None mean the server's defaults."""

    name: str
    role: str
    rate_limit: str | None = None
    write_limit: str | None = None
    ws_connections: int | None = None

    def validated(self) -> KeyRequest:
        if not NAME_PATTERN.match(self.name or ""):
            raise InvalidInput(
                "invalid key name",
                details="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                field="name",
            )
        if self.role not in tuple(Role):
            raise InvalidInput("invalid role", details="one of viewer, trader, admin", field="role")
        for field_name in ("rate_limit", "write_limit"):
            value = getattr(self, field_name)
            if value is not None:
                parse_limit(value, field_name)
        if self.ws_connections is not None and not 1 <= self.ws_connections <= MAX_WS_CONNECTIONS:
            raise InvalidInput(
                "invalid ws_connections",
                details=f"between 1 and {MAX_WS_CONNECTIONS}",
                field="ws_connections",
            )
        return self


def hash_key(raw: str) -> bytes:
    """SHA-256 of a key. Keys are long random strings, so no salt or slow hash is needed."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).digest()


def new_secret() -> str:
    """A fresh key: ``cf_`` and 256 random bits, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(request: KeyRequest, raw: str | None = None) -> tuple[ApiKey, str]:
    """Issue a key; returns the stored row and the key itself (shown once, never stored)."""
    request = request.validated()
    raw = raw or new_secret()
    with db.atomic():
        if ApiKey.select().where(active(), ApiKey.name == request.name).exists():
            raise Conflict("key name taken", details=f"an active key is named {request.name}",
                           field="name")  # fmt: skip
        key = ApiKey.create(
            name=request.name,
            role=request.role,
            key_hash=hash_key(raw),
            rate_limit=request.rate_limit,
            write_limit=request.write_limit,
            ws_connections=request.ws_connections,
        )
    return key, raw


def active():
    return ApiKey.revoked_at.is_null()


def list_keys() -> list[ApiKey]:
    """Active keys, oldest first."""
    return list(ApiKey.select().where(active()).order_by(ApiKey.created_at, ApiKey.name))


def revoke_key(
    name: str, bootstrap_secret: str | None = None, *, keep_an_admin: bool = False
) -> ApiKey:
    """Revoke the active key called ``name``; it stops working on every process at once.

    The bootstrap key would come back at the next start while CRYPTOFUNK_ADMIN_KEY is set, so
    revoking it then is refused. ``keep_an_admin`` (the API) refuses to revoke the last admin
    key, which would lock every admin out until someone with shell access made a new one.
    """
    if name == BOOTSTRAP_NAME and bootstrap_secret:
        raise InvalidInput(
            "key is managed by the environment",
            details="the bootstrap key comes from CRYPTOFUNK_ADMIN_KEY; unset the variable "
            "(and restart) to retire it",
            field="name",
        )
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtext('cryptofunk bootstrap key'))")
        key = ApiKey.get_or_none(active(), ApiKey.name == name)
        if key is None:
            raise NotFound("key not found", name=name)
        admins = ApiKey.select().where(active(), ApiKey.role == Role.ADMIN).count()
        if keep_an_admin and key.role == Role.ADMIN and admins == 1:
            raise InvalidInput(
                "last admin key",
                details="create another admin key before revoking the last one",
                field="name",
            )
        key.revoked_at = utcnow()
        key.save(only=[ApiKey.revoked_at])
    return key


def find_active(raw: str) -> ApiKey | None:
    """The active key ``raw``."""
    return find_active_by_hash(hash_key(raw))


def find_active_by_hash(digest: bytes) -> ApiKey | None:
    """The active key with this SHA-256 digest, compared in constant time."""
    key = ApiKey.get_or_none(ApiKey.key_hash == digest, active())
    if key is None or not hmac.compare_digest(bytes(key.key_hash), digest):
        return None
    return key


def find_active_by_id(key_id: str) -> ApiKey | None:
    try:
        return ApiKey.get_or_none(ApiKey.id == uuid.UUID(key_id), active())
    except ValueError:
        return None


def touch(key_ids: list[str], at: datetime) -> None:
    """Record that keys were used (batched by the caller, not written per request)."""
    if key_ids:
        ApiKey.update(last_used_at=at).where(
            ApiKey.id.in_([uuid.UUID(key_id) for key_id in key_ids])
        ).execute()


def ensure_bootstrap(secret: str) -> str:
    """Make sure the key named ``bootstrap`` is ``secret`` with the admin role.

    Returns "created", "replaced" (the variable changed: the old key is revoked) or "present".
    """
    if len(secret) < MIN_BOOTSTRAP_LENGTH:
        raise SystemExit(
            f"CRYPTOFUNK_ADMIN_KEY must be at least {MIN_BOOTSTRAP_LENGTH} characters long"
        )
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtext('cryptofunk bootstrap key'))")
        current = ApiKey.get_or_none(active(), ApiKey.name == BOOTSTRAP_NAME)
        if current is not None and hmac.compare_digest(bytes(current.key_hash), hash_key(secret)):
            return "present"
        if current is not None:
            current.revoked_at = utcnow()
            current.save(only=[ApiKey.revoked_at])
        create_key(KeyRequest(name=BOOTSTRAP_NAME, role=Role.ADMIN), raw=secret)
    return "replaced" if current is not None else "created"


def issue_first_admin_key() -> str | None:
    """On a database without any active key, issue an admin key and return it (else None)."""
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(hashtext('cryptofunk bootstrap key'))")
        if ApiKey.select().where(active()).exists():
            return None
        _, raw = create_key(KeyRequest(name=FIRST_ADMIN_NAME, role=Role.ADMIN))
    return raw
