"""Every operation of the OpenAPI document by every kind of caller, generated from the document's
own ``x-required-role``: the document and the server must agree."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import replace

import jwt
import pytest

from app import create_app
from app.access import keys
from app.access.roles import Role
from tests.factories import make_key

METHODS = ("get", "post", "put", "patch", "delete")
RANKS = {"viewer": 0, "trader": 1, "admin": 2}
PATH_VALUES = {"symbol": "BTC-USDT", "name": "no-such-name"}


def operations(app) -> list[tuple[str, str, dict]]:
    document = app.test_client().get("/api/v1/openapi.json").json
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), str(uuid.uuid4())), path)


@pytest.fixture
def callers(app) -> dict[str, dict]:
    """Headers of every kind of caller; the role keys have limits no test reaches."""
    revoked = make_key("admin", name="revoked-admin")
    keys.revoke_key("revoked-admin")
    secret = app.extensions["cryptofunk"]["access"].authenticator.jwt_secret
    admin = keys.ApiKey.get(keys.ApiKey.name == "fixture-admin")
    now = int(time.time())
    expired = jwt.encode(
        {"sub": admin.name, "role": "admin", "kid": str(admin.id), "iat": now - 60,
         "exp": now - 1}, secret, algorithm="HS256",
    )  # fmt: skip
    return {
        "none": {},
        "bad key": {"X-API-Key": "cf_" + "x" * 43},
        "expired token": {"Authorization": f"Bearer {expired}"},
        "revoked key": {"X-API-Key": revoked},
        **{role: {"X-API-Key": make_key(role)} for role in RANKS},
    }


def test_every_operation_declares_its_role_and_its_refusals(app):
    for path, method, operation in operations(app):
        role = operation.get("x-required-role")
        assert role in ("public", *RANKS), (method, path)
        responses = operation["responses"]
        assert "503" in responses, (method, path)
        if role == "public":
            assert operation["security"] == []
            continue
        assert {"401", "403", "429"} <= set(responses), (method, path)
        assert operation["security"] == [{"ApiKey": []}, {"Bearer": []}]
    declared = {(path, method): op["x-required-role"] for path, method, op in operations(app)}
    assert declared[("/api/v1/config", "patch")] == "admin"
    assert declared[("/api/v1/orders", "post")] == "trader"
    assert declared[("/api/v1/orders", "get")] == "viewer"
    assert declared[("/health", "get")] == "public"


def test_every_role_gets_exactly_what_the_document_promises(settings, callers, listener_up):
    # Hundreds of bad credentials from one address: raise the failed-attempt throttle.
    app = create_app(replace(settings, auth_failure_limit="100000/minute"))
    checked = 0
    for path, method, operation in operations(app):
        needed = operation["x-required-role"]
        for caller, headers in callers.items():
            client = app.test_client()
            body = {} if method in ("post", "put", "patch") else None
            response = client.open(concrete(path), method=method.upper(), headers=headers,
                                   json=body)  # fmt: skip
            status = response.status_code
            where = f"{caller} {method.upper()} {path} → {status} {response.get_data()[:200]!r}"
            assert status < 500, where
            assert response.is_json or path in ("/metrics", "/api/docs"), where
            if needed == "public":
                assert status not in (401, 403), where
            elif caller not in RANKS:
                assert status == 401, where
                assert response.json["error"], where
            elif RANKS[caller] < RANKS[needed]:
                assert status == 403, where
                assert response.json["error"] == "insufficient role", where
            else:
                assert status not in (401, 403), where
            checked += 1
    assert checked == len(operations(app)) * len(callers) >= 39 * 7


def test_roles_are_ordered():
    assert Role.ADMIN.allows(Role.TRADER) and Role.TRADER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.TRADER) and not Role.TRADER.allows(Role.ADMIN)
