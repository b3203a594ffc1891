"""What every process start does for access control."""

from __future__ import annotations

import logging

from app.access.keys import ensure_bootstrap
from app.db import db
from app.settings import Settings

log = logging.getLogger(__name__)


def prepare_access(settings: Settings) -> None:
    """The bootstrap key from CRYPTOFUNK_ADMIN_KEY exists, with that value. (Auth switched off
    is announced by every web worker: app.api.access.register_access_control.)"""
    if settings.admin_key and settings.database_url:
        with db.connection_context():
            outcome = ensure_bootstrap(settings.admin_key)
        if outcome != "present":
            log.info("bootstrap admin key from CRYPTOFUNK_ADMIN_KEY %s", outcome)
    if settings.auth_disabled:
        log.warning("AUTH_DISABLED=true: the API takes anonymous requests as admin (loopback only)")
