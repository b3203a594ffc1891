"""Schemas for API info, health and status."""

from marshmallow import Schema, fields


class InfoSchema(Schema):
    name = fields.String()
    version = fields.String()
    status = fields.String()


class HealthSchema(Schema):
    status = fields.String(metadata={"enum": ["healthy", "unhealthy"]})
    version = fields.String()
    uptime = fields.String(metadata={"example": "2h15m30s"})
    error = fields.String(metadata={"example": "database connection failed"})


class ComponentsSchema(Schema):
    database = fields.String()
    api = fields.String()
    websocket = fields.String()


class WebsocketStatsSchema(Schema):
    connected_clients = fields.Integer()


class StatusSchema(Schema):
    status = fields.String(metadata={"enum": ["operational", "degraded"]})
    version = fields.String()
    uptime = fields.String()
    components = fields.Nested(ComponentsSchema)
    websocket = fields.Nested(WebsocketStatsSchema)
