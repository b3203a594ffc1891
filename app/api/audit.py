"""The audit trail of writes and refused attempts. Admins only."""

from __future__ import annotations

from app.access import audit
from app.access.roles import Role
from app.api.access import requires
from app.api.base import ApiBlueprint
from app.schemas.access import AuditListArgs, AuditListSchema
from app.schemas.common import page_of

blp = ApiBlueprint("audit", __name__, url_prefix="/api/v1/audit", description="Audit trail")


@blp.get("")
@requires(Role.ADMIN)
@blp.arguments(AuditListArgs, location="query")
@blp.response(200, AuditListSchema)
def list_audit(args: dict):
    """Writes and refused attempts (401/403/429), newest first, filtered by key, route, status
    and time."""
    page = page_of(args)
    return audit.list_entries(audit.AuditFilter(**args), page).body("entries")
