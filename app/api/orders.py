"""Orders: list, detail, manual entry, cancellation."""

from __future__ import annotations

from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint, settings
from app.identifiers import parse_uuid
from app.schemas.common import ErrorSchema, page_of
from app.schemas.orders import (
    CreateOrderArgs,
    OrderEnvelopeSchema,
    OrderListArgs,
    OrderListSchema,
    OrderResultSchema,
)
from app.trading import orders

blp = ApiBlueprint("orders", __name__, url_prefix="/api/v1/orders", description="Orders")


@blp.get("")
@requires(Role.VIEWER)
@blp.arguments(OrderListArgs, location="query")
@blp.response(200, OrderListSchema)
def list_orders(args: dict):
    """Get orders, newest first, filtered by session_id, symbol, status and side."""
    page = page_of(args)
    return orders.list_orders(orders.OrderFilter(**args), page).body("orders")


@blp.get("/<id:order_id>")
@requires(Role.VIEWER)
@blp.response(200, OrderEnvelopeSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid order ID format")
@blp.alt_response(404, schema=ErrorSchema, description="Order not found")
def get_order(order_id: str):
    """Get detailed information about a specific order."""
    return {"order": orders.order_view(parse_uuid(order_id, "order_id"))}


@blp.post("")
@requires(Role.TRADER)
@blp.arguments(CreateOrderArgs)
@blp.response(201, OrderResultSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Invalid body or no active session")
@blp.alt_response(
    503, schema=ErrorSchema, description="The engine is behind (back-pressure); see Retry-After"
)
def create_order(args: dict):
    """Create a new order (manual trading) on the given or the symbol's active session."""
    config = settings()
    order = orders.place_order(
        orders.OrderRequest(**args),
        config.feed_exchange,
        max_backlog_seconds=config.order_backlog_seconds,
    )
    return {"order": order, "message": "Order created successfully"}


@blp.delete("/<id:order_id>")
@requires(Role.TRADER)
@blp.response(200, OrderResultSchema)
@blp.alt_response(400, schema=ErrorSchema, description="Order cannot be cancelled")
@blp.alt_response(404, schema=ErrorSchema, description="Order not found")
def cancel_order(order_id: str):
    """Cancel a pending order."""
    order = orders.cancel_order(parse_uuid(order_id, "order_id"))
    return {"order": order, "message": "Order cancelled successfully"}
