"""Schemas for agents and heartbeats."""

from marshmallow import Schema, fields, validate

from app.schemas.fields import Choice, Timestamp

AGENT_STATUSES = ("active", "inactive", "error")
AGENT_NAME = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    error="must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
)


class AgentSchema(Schema):
    name = fields.String()
    status = fields.String(metadata={"enum": list(AGENT_STATUSES)})
    last_seen_at = Timestamp()
    is_healthy = fields.Boolean(
        attribute="is_healthy_now",
        metadata={"description": "active and heard from within three heartbeat intervals"},
    )
    heartbeat_interval_seconds = fields.Integer()
    metadata = fields.Dict()


class AgentEnvelopeSchema(Schema):
    agent = fields.Nested(AgentSchema)


class AgentHeartbeatResultSchema(AgentEnvelopeSchema):
    message = fields.String()


class AgentListSchema(Schema):
    agents = fields.List(fields.Nested(AgentSchema))
    count = fields.Integer()


class AgentHealthSchema(Schema):
    name = fields.String()
    status = fields.String()
    last_seen_at = Timestamp()
    healthy = fields.Boolean(attribute="is_healthy_now")


class HeartbeatArgs(Schema):
    status = Choice(AGENT_STATUSES, upper=False, load_default="active")
    metadata = fields.Dict(
        keys=fields.String(validate=validate.Length(1, 64)),
        load_default=dict,
        metadata={"propertyNames": {"minLength": 1, "maxLength": 64}},
    )
    heartbeat_interval_seconds = fields.Integer(validate=validate.Range(1, 86400))
