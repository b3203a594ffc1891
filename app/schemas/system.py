"""Schemas for API info, health and status."""

from marshmallow import Schema, fields

from app.schemas.fields import Timestamp


class InfoSchema(Schema):
    name = fields.String()
    version = fields.String()
    status = fields.String()


class HealthSchema(Schema):
    status = fields.String(metadata={"enum": ["healthy", "unhealthy"]})
    version = fields.String()
    uptime = fields.String(metadata={"example": "2h15m30s"})
    error = fields.String(metadata={"example": "database connection failed"})
    pool = fields.String(
        metadata={
            "enum": ["ok", "exhausted"],
            "description": "this process's connection pool; exhausted is not unhealthy",
        }
    )


class ComponentsSchema(Schema):
    database = fields.String()
    api = fields.String()
    websocket = fields.String()


class WebsocketStatsSchema(Schema):
    connected_clients = fields.Integer()


class EngineStatusSchema(Schema):
    state = fields.String(metadata={"enum": ["active", "stale", "none"]})
    holder = fields.String(allow_none=True, metadata={"description": "host:pid of the leader"})
    epoch = fields.Integer(allow_none=True)
    heartbeat_age_seconds = fields.Float(allow_none=True)


class ProcessStatusSchema(Schema):
    name = fields.String()
    pid = fields.Integer(allow_none=True)
    started_at = Timestamp()
    restarts = fields.Integer()
    last_exit_code = fields.Integer(allow_none=True)
    last_restart_at = Timestamp(allow_none=True)


class LiveAccountStatusSchema(Schema):
    exchange = fields.String(metadata={"description": "EXCHANGE_ID: the exchange LIVE trades on"})
    sandbox = fields.Boolean(metadata={"description": "EXCHANGE_SANDBOX: the exchange's testnet"})
    state = fields.String(metadata={"enum": ["ready", "unavailable"]})
    problem = fields.String(allow_none=True, metadata={"description": "why LIVE is refused now"})
    checked_at = Timestamp(allow_none=True)
    clock_offset_ms = fields.Integer(allow_none=True)
    markets = fields.Integer()


class StatusSchema(Schema):
    status = fields.String(metadata={"enum": ["operational", "degraded"]})
    version = fields.String()
    uptime = fields.String()
    components = fields.Nested(ComponentsSchema)
    websocket = fields.Nested(WebsocketStatsSchema)
    engine = fields.Nested(EngineStatusSchema)
    processes = fields.List(
        fields.Nested(ProcessStatusSchema),
        metadata={"description": "processes supervised by `python -m app run`, with restarts"},
    )
    live_account = fields.Nested(
        LiveAccountStatusSchema,
        allow_none=True,
        metadata={"description": "the LIVE exchange account; null without LIVE credentials"},
    )


class ReadySchema(Schema):
    status = fields.String(metadata={"enum": ["ready", "not_ready"]})
    version = fields.String()
    database = fields.String(metadata={"enum": ["up", "down"]})
    listener = fields.String(
        metadata={"enum": ["up", "down"], "description": "this process's event listener"}
    )
    engine = fields.String(
        metadata={
            "enum": ["active", "standby", "none", "unknown"],
            "description": "reported, never a reason to be not ready: an engine restart must "
            "not take the web out of rotation",
        }
    )
