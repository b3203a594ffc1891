"""The audit trail: every write and every refused attempt, who made it and what came of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from peewee import AutoField, IntegerField, TextField
from playhouse.postgres_ext import DateTimeTZField

from app.db import db
from app.models import BaseModel, JsonDocument, utcnow
from app.pagination import Listing, Page

SECRET_FIELD_HINTS = ("key", "secret", "password", "token", "credential")
MAX_TEXT = 200
MAX_FIELDS = 30
REDACTED = "[redacted]"


class AuditEntry(BaseModel):
    id = AutoField()
    at = DateTimeTZField(default=utcnow)
    key_name = TextField(null=True)
    role = TextField(null=True)
    method = TextField()
    route = TextField()
    path = TextField()
    status = IntegerField()
    client_ip = TextField(null=True)
    body = JsonDocument(null=True)

    class Meta:
        table_name = "audit_log"


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in SECRET_FIELD_HINTS)


def summarize(value, depth: int = 0):
    """A bounded copy of a request body: long text cut, secret-looking fields redacted."""
    if isinstance(value, dict):
        if depth >= 2:
            return f"{{{len(value)} fields}}"
        return {
            str(name)[:MAX_TEXT]: REDACTED if _is_secret(str(name)) else summarize(item, depth + 1)
            for name, item in list(value.items())[:MAX_FIELDS]
        }
    if isinstance(value, list):
        return f"[{len(value)} items]"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "…"
    return value


@dataclass(frozen=True)
class AuditRecord:
    key_name: str | None
    role: str | None
    method: str
    route: str
    path: str
    status: int
    client_ip: str | None
    body: object = None


# Written out once: every write request sends it (riding its COMMIT), and building an
# AuditEntry instance per request to compile it cost more than the rest of the audit.
INSERT_SQL = (
    "INSERT INTO audit_log (at, key_name, role, method, route, path, status, client_ip, body) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def _insert_params(entry: AuditRecord) -> tuple:
    body = None if entry.body is None else AuditEntry.body.db_value(summarize(entry.body))
    return (utcnow(), entry.key_name, entry.role, entry.method, entry.route, entry.path[:500],
            entry.status, entry.client_ip, body)  # fmt: skip


def record(entry: AuditRecord) -> None:
    """Append one entry (autocommit: it stands whether or not the request's work did)."""
    db.execute_prepared(INSERT_SQL, _insert_params(entry))


def record_with_next_commit(entry: AuditRecord) -> None:
    """Have ``entry`` written in the same transaction, and round trip, as the next COMMIT of
    this request's work: a committed write always has its entry, at no extra round trip.
    :func:`committed_with_work` then says whether that happened."""
    db.ride_next_commit(INSERT_SQL, _insert_params(entry))


def committed_with_work() -> bool:
    """Whether the entry of :func:`record_with_next_commit` was committed (and forget it)."""
    return db.take_rider()


@dataclass(frozen=True)
class AuditFilter:
    key: str | None = None
    route: str | None = None
    status: int | None = None
    from_date: datetime | None = None
    to_date: datetime | None = None


def list_entries(filters: AuditFilter, page: Page) -> Listing:
    """Entries matching every given filter, newest first."""
    query = AuditEntry.select().order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
    if filters.key is not None:
        query = query.where(AuditEntry.key_name == filters.key)
    if filters.route is not None:
        query = query.where(AuditEntry.route == filters.route)
    if filters.status is not None:
        query = query.where(AuditEntry.status == filters.status)
    if filters.from_date is not None:
        query = query.where(AuditEntry.at >= filters.from_date)
    if filters.to_date is not None:
        query = query.where(AuditEntry.at <= filters.to_date)
    return Listing.of(query, page)
