"""Schemas for API keys, tokens, the caller's identity and the audit trail."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.access.keys import MAX_WS_CONNECTIONS, NAME_PATTERN
from app.access.roles import ROLE_ORDER
from app.schemas.common import DateRangeArgs, PageArgs, PagedListSchema
from app.schemas.fields import Choice, Timestamp

_WINDOW = r"[1-9][0-9]{0,8}/(second|minute|hour|day)"
LIMIT_PATTERN = rf"^{_WINDOW}(;{_WINDOW}){{0,3}}$"
LIMIT_HELP = "COUNT/PERIOD such as 6000/minute, or several joined by ';' (10/second;600/hour)"
ROLES = [str(role) for role in ROLE_ORDER]
KEY_NAME = validate.Regexp(NAME_PATTERN, error="1-64 letters, digits, '.', '_' or '-'")


def _limit_field(description: str):
    return fields.String(
        allow_none=True,
        load_default=None,
        validate=[validate.Length(1, 100), validate.Regexp(LIMIT_PATTERN, error=LIMIT_HELP)],
        metadata={"description": f"{description}; {LIMIT_HELP}; null: the server default"},
    )


class CreateKeyArgs(Schema):
    name = fields.String(
        required=True,
        validate=KEY_NAME,
        metadata={"pattern": NAME_PATTERN.pattern, "example": "trading-bot"},
    )
    role = Choice(ROLES, upper=False, required=True)
    rate_limit = _limit_field("the key's own limit on general routes")
    write_limit = _limit_field("the key's own limit on writes")
    ws_connections = fields.Integer(
        allow_none=True,
        load_default=None,
        validate=validate.Range(1, MAX_WS_CONNECTIONS),
        metadata={"description": "WebSocket connections the key may hold at once"},
    )


class KeySchema(Schema):
    name = fields.String()
    role = fields.String(metadata={"enum": ROLES})
    rate_limit = fields.String(allow_none=True)
    write_limit = fields.String(allow_none=True)
    ws_connections = fields.Integer(allow_none=True)
    created_at = Timestamp()
    last_used_at = Timestamp(allow_none=True)


class CreatedKeySchema(KeySchema):
    key = fields.String(metadata={"description": "the key itself: shown this once, never again"})


class KeyListSchema(Schema):
    keys = fields.List(fields.Nested(KeySchema))
    count = fields.Integer()


class KeyRevokedSchema(Schema):
    message = fields.String()
    name = fields.String()


class TokenSchema(Schema):
    token = fields.String(metadata={"description": "send as Authorization: Bearer <token>"})
    expires_at = Timestamp()


class LimitsSchema(Schema):
    general = fields.String(allow_none=True, metadata={"description": "null: not limited"})
    write = fields.String(allow_none=True, metadata={"description": "null: not limited"})
    ws_connections = fields.Integer()


class MeSchema(Schema):
    name = fields.String(allow_none=True, metadata={"description": "null when auth is disabled"})
    role = fields.String(metadata={"enum": ROLES})
    authenticated_by = fields.String(metadata={"enum": ["key", "token", "anonymous"]})
    auth_enabled = fields.Boolean()
    limits = fields.Nested(LimitsSchema)
    ws_connections_open = fields.Integer()


class AuditListArgs(PageArgs, DateRangeArgs):
    key = fields.String(validate=validate.Length(1, 64), metadata={"description": "key name"})
    route = fields.String(
        validate=validate.Length(1, 200),
        metadata={"description": "route as the OpenAPI document writes it: /api/v1/keys/{name}"},
    )
    status = fields.Integer(validate=validate.Range(100, 599))


class AuditEntrySchema(Schema):
    id = fields.Integer()
    at = Timestamp()
    key_name = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    method = fields.String()
    route = fields.String()
    path = fields.String()
    status = fields.Integer()
    client_ip = fields.String(allow_none=True)
    body = fields.Raw(allow_none=True, metadata={"description": "summary of the request body"})


class AuditListSchema(PagedListSchema):
    entries = fields.List(fields.Nested(AuditEntrySchema))
