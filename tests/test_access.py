"""API keys, tokens and roles: who may call what, and every bad credential is a JSON 401."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from app import create_app
from app.access import keys
from app.models import utcnow
from app.settings import PROJECT_ROOT, Settings
from tests.conftest import with_key
from tests.factories import make_key, make_order, make_session

START = {"symbol": "BTC/USDT", "initial_capital": 1000}


def as_key(app, key: str | None):
    client = app.test_client()
    return with_key(client, key) if key is not None else client


def assert_refused(response, status: int, error: str | None = None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json and "error" in response.json
    if error:
        assert response.json["error"] == error


# -- credentials ------------------------------------------------------------------------------


def test_every_route_but_the_public_ones_needs_a_credential(app):
    anonymous = app.test_client()
    for path in ("/", "/health", "/api/v1/health", "/api/v1/openapi.json", "/api/docs"):
        assert anonymous.get(path).status_code == 200, path
    refused = anonymous.get("/api/v1/orders")
    assert_refused(refused, 401, "authentication required")
    assert "X-API-Key" in refused.json["details"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert_refused(anonymous.patch("/api/v1/config", json={"trading_mode": "live"}), 401)
    assert_refused(anonymous.post("/api/v1/agents/x/heartbeat"), 401)
    assert_refused(anonymous.get("/metrics"), 401)


def test_a_key_works_as_x_api_key_and_as_bearer(app):
    key = make_key("viewer")
    assert app.test_client().get("/api/v1/orders", headers={"X-API-Key": key}).status_code == 200
    bearer = {"Authorization": f"Bearer {key}"}
    assert app.test_client().get("/api/v1/orders", headers=bearer).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": ""},
        {"X-API-Key": "cf_not-a-key"},
        {"X-API-Key": "x" * 20_000},
        {"X-API-Key": "é\u00ff\u0080"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "bearer a.b.c"},
        {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"},
        {"Authorization": "Bearer eyJ.eyJ.x"},
        {"Authorization": "Bearer ....."},
        {"Authorization": "Token abc"},
    ],
)
def test_a_bad_credential_is_a_json_401_never_a_500(app, headers):
    response = app.test_client().get("/api/v1/orders", headers=headers)
    assert_refused(response, 401)


def test_keys_are_stored_as_hashes_only(app):
    key = make_key("trader", name="hashed")
    stored = keys.ApiKey.get(keys.ApiKey.name == "hashed")
    assert bytes(stored.key_hash) == keys.hash_key(key)
    assert key.encode() not in bytes(stored.key_hash)
    assert key.startswith("cf_") and len(key) > 40


# -- roles ------------------------------------------------------------------------------------


def test_roles_allow_what_they_name_and_refuse_the_rest_with_403(app):
    viewer, trader, admin = as_key(app, make_key("viewer")), as_key(app, make_key("trader")), \
        as_key(app, make_key("admin"))  # fmt: skip
    assert viewer.get("/api/v1/orders").status_code == 200
    refused = viewer.post("/api/v1/trade/start", json=START)
    assert_refused(refused, 403, "insufficient role")
    assert "trader" in refused.json["details"]
    assert_refused(viewer.post("/api/v1/market/prices", json={"symbol": "BTC/USDT", "price": 1}),
                   403)  # fmt: skip
    assert trader.post("/api/v1/trade/start", json=START).status_code == 201
    order = make_order(make_session(symbol="ETH/USDT"))
    assert trader.delete(f"/api/v1/orders/{order.id}").status_code == 200
    assert_refused(trader.patch("/api/v1/config", json={"max_positions": 3}), 403)
    assert_refused(trader.get("/api/v1/keys"), 403)
    assert_refused(trader.get("/api/v1/audit"), 403)
    assert admin.patch("/api/v1/config", json={"max_positions": 3}).status_code == 200
    assert admin.get("/api/v1/keys").status_code == 200


def test_me_tells_a_client_its_name_role_and_limits(app, settings):
    key = make_key("trader", name="bot", rate_limit="6000/minute", write_limit=None,
                   ws_connections=9)  # fmt: skip
    body = as_key(app, key).get("/api/v1/auth/me").json
    assert body == {
        "name": "bot",
        "role": "trader",
        "authenticated_by": "key",
        "auth_enabled": True,
        "limits": {"general": "6000/minute", "write": settings.rate_limit_write,
                   "ws_connections": 9},
        "ws_connections_open": 0,
    }  # fmt: skip


# -- the key API and the CLI -------------------------------------------------------------------


def test_admins_issue_list_and_revoke_keys_over_the_api(client, app):
    created = client.post(
        "/api/v1/keys", json={"name": "feed", "role": "trader", "write_limit": "600/minute"}
    )
    assert created.status_code == 201
    body = created.json
    assert (body["name"], body["role"], body["write_limit"]) == ("feed", "trader", "600/minute")
    feed = as_key(app, body["key"])
    assert feed.get("/api/v1/auth/me").json["limits"]["write"] == "600/minute"
    listed = client.get("/api/v1/keys").json
    assert {"fixture-admin", "feed"} <= {key["name"] for key in listed["keys"]}
    assert body["key"] not in str(listed) and "key_hash" not in str(listed)
    assert_refused(client.post("/api/v1/keys", json={"name": "feed", "role": "viewer"}), 409)
    assert_refused(client.post("/api/v1/keys", json={"name": "x y", "role": "viewer"}), 400)
    assert_refused(client.post("/api/v1/keys", json={"name": "x", "role": "root"}), 400)
    bad_limit = client.post("/api/v1/keys", json={"name": "x", "role": "viewer",
                                                   "rate_limit": "lots"})  # fmt: skip
    assert_refused(bad_limit, 400)
    assert bad_limit.json["field"] == "rate_limit"
    assert client.delete("/api/v1/keys/feed").json == {"message": "Key revoked", "name": "feed"}
    assert_refused(feed.get("/api/v1/auth/me"), 401, "invalid API key")
    assert_refused(client.delete("/api/v1/keys/feed"), 404, "key not found")
    # The name is free again once revoked.
    assert client.post("/api/v1/keys", json={"name": "feed", "role": "viewer"}).status_code == 201


def test_the_last_admin_key_cannot_be_revoked_over_the_api(app):
    from app.access.keys import ApiKey

    others = ApiKey.update(revoked_at=utcnow()).where(ApiKey.role == "admin")
    others.execute()
    try:
        only = as_key(app, make_key("admin", name="only-admin"))
        refused = only.delete("/api/v1/keys/only-admin")
        assert_refused(refused, 400, "last admin key")
        make_key("admin", name="second-admin")
        assert only.delete("/api/v1/keys/only-admin").status_code == 200
    finally:
        ApiKey.update(revoked_at=None).where(ApiKey.name == "fixture-admin").execute()


def run_cli(database_url: str, *args: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning", **env}
    environment.pop("CRYPTOFUNK_ADMIN_KEY", None) if "CRYPTOFUNK_ADMIN_KEY" not in env else None
    return subprocess.run(
        [sys.executable, "-m", "app", "keys", *args],
        cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_keys_cli_creates_lists_and_revokes(app, database_url):
    created = run_cli(database_url, "create", "--name", "desk", "--role", "trader",
                      "--rate-limit", "6000/minute", "--write-limit", "600/minute")  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("cf_")
    client = as_key(app, key)
    assert client.get("/api/v1/auth/me").json["limits"]["general"] == "6000/minute"
    listed = run_cli(database_url, "list").stdout
    header, *rows = listed.splitlines()
    assert header.split() == ["NAME", "ROLE", "CREATED", "LAST", "USED", "LIMITS"]
    desk = next(row for row in rows if row.startswith("desk "))
    assert "trader" in desk and "never" not in desk  # used just above
    assert "general 6000/minute, write 600/minute" in desk
    assert key not in listed
    assert run_cli(database_url, "revoke", "desk").returncode == 0
    assert_refused(client.get("/api/v1/auth/me"), 401)
    missing = run_cli(database_url, "revoke", "desk")
    assert missing.returncode == 1 and "key not found" in missing.stderr
    bad = run_cli(database_url, "create", "--name", "x", "--role", "viewer", "--rate-limit", "0/s")
    assert bad.returncode == 1 and "invalid rate_limit" in bad.stderr


def test_the_bootstrap_key_follows_the_environment(app, database_url, settings):
    secret = "bootstrap-secret-for-tests-0123456789"
    assert keys.ensure_bootstrap(secret) == "created"
    assert keys.ensure_bootstrap(secret) == "present"
    assert as_key(app, secret).get("/api/v1/auth/me").json["name"] == "bootstrap"
    assert keys.ensure_bootstrap(secret + "-rotated") == "replaced"
    assert_refused(as_key(app, secret).get("/api/v1/auth/me"), 401)
    # While the variable is set, revoking the key is refused with what to do instead.
    refused = run_cli(database_url, "revoke", "bootstrap",
                      CRYPTOFUNK_ADMIN_KEY=secret + "-rotated")  # fmt: skip
    assert refused.returncode == 1 and "unset" in refused.stderr
    guarded = create_app(replace(settings, admin_key=secret + "-rotated"))
    over_api = as_key(guarded, secret + "-rotated").delete("/api/v1/keys/bootstrap")
    assert_refused(over_api, 400, "key is managed by the environment")
    assert run_cli(database_url, "revoke", "bootstrap").returncode == 0
    with pytest.raises(SystemExit, match="at least 32"):
        Settings.from_env(admin_key="short")


# -- tokens -----------------------------------------------------------------------------------


def issue_token(app, key: str) -> str:
    response = as_key(app, key).post("/api/v1/auth/token")
    assert response.status_code == 200, response.json
    return response.json["token"]


def test_a_token_stands_in_for_its_key_until_it_expires(app, settings):
    key = make_key("trader", name="browser")
    response = as_key(app, key).post("/api/v1/auth/token")
    expires_at = datetime.fromisoformat(response.json["expires_at"].replace("Z", "+00:00"))
    lifetime = expires_at - datetime.now(UTC)
    assert timedelta(seconds=settings.jwt_lifetime_seconds - 5) < lifetime
    assert lifetime <= timedelta(seconds=settings.jwt_lifetime_seconds)
    token = response.json["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["role"]) == ("browser", "trader")
    bearer = app.test_client()
    me = bearer.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json
    assert (me["name"], me["authenticated_by"]) == ("browser", "token")
    # A token cannot mint tokens: only a key can.
    again = bearer.post("/api/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
    assert_refused(again, 403, "a key is required")


def test_expired_tampered_unsigned_and_foreign_tokens_are_401(app):
    key = make_key("admin", name="signer")
    token = issue_token(app, key)
    secret = app.extensions["cryptofunk"]["access"].authenticator.jwt_secret
    claims = jwt.decode(token, secret, algorithms=["HS256"])
    now = int(time.time())
    header, _, signature = token.split(".")
    escalated = json.dumps({**claims, "role": "admin"}).encode()
    tampered = base64.urlsafe_b64encode(escalated).decode().rstrip("=")
    forged_role = jwt.encode({**claims, "role": "admin", "sub": "x"}, "another-secret-" * 3,
                             algorithm="HS256")  # fmt: skip
    cases = {
        "token expired": jwt.encode(
            {**claims, "iat": now - 100, "exp": now - 10}, secret, algorithm="HS256"
        ),
        "token signature does not match": f"{header}.{tampered}.{signature}",
        "invalid token": jwt.encode(claims, None, algorithm="none"),
        "invalid token ": jwt.encode(claims, secret, algorithm="HS512"),
        "token signature does not match ": forged_role,
    }
    for expected, bad in cases.items():
        response = app.test_client().get(
            "/api/v1/orders", headers={"Authorization": f"Bearer {bad}"}
        )
        assert_refused(response, 401)
        assert response.json["error"].startswith(expected.strip()), (expected, response.json)
    missing_claim = jwt.encode({"sub": "signer", "exp": now + 60}, secret, algorithm="HS256")
    response = app.test_client().get(
        "/api/v1/orders", headers={"Authorization": f"Bearer {missing_claim}"}
    )
    assert_refused(response, 401)


def test_revoking_a_key_revokes_its_tokens(app, client):
    key = make_key("viewer", name="short-lived")
    token = issue_token(app, key)
    headers = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/orders", headers=headers).status_code == 200
    assert client.delete("/api/v1/keys/short-lived").status_code == 200
    assert_refused(app.test_client().get("/api/v1/orders", headers=headers), 401, "token revoked")


def test_tokens_sign_with_jwt_secret_when_it_is_set(app, settings):
    signed = create_app(replace(settings, jwt_secret="s" * 40))
    token = issue_token(signed, make_key("viewer"))
    assert jwt.decode(token, "s" * 40, algorithms=["HS256"])["role"] == "viewer"
    # The stored secret of the other app does not verify it.
    assert_refused(
        app.test_client().get("/api/v1/orders", headers={"Authorization": f"Bearer {token}"}),
        401,
    )


# -- failed attempts, auth disabled -------------------------------------------------------------


def test_failed_attempts_are_throttled_per_address(settings):
    app = create_app(replace(settings, auth_failure_limit="3/minute"))
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for _ in range(3):
        assert_refused(attacker.get("/api/v1/orders", headers={"X-API-Key": "guess"}), 401)
    throttled = attacker.get("/api/v1/orders", headers={"X-API-Key": "guess"})
    assert_refused(throttled, 429, "too many failed authentication attempts")
    assert 1 <= throttled.json["retry_after"] <= 60
    assert int(throttled.headers["Retry-After"]) == throttled.json["retry_after"]
    # Even a right key waits: the address is not trusted until the window ends.
    right = attacker.get("/api/v1/orders", headers={"X-API-Key": make_key("viewer")})
    assert_refused(right, 429)
    # Another address is unaffected.
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert_refused(other.get("/api/v1/orders", headers={"X-API-Key": "guess"}), 401)


def test_auth_disabled_restores_anonymous_access_on_loopback_only(settings, monkeypatch):
    open_app = create_app(replace(settings, auth_disabled=True))
    anonymous = open_app.test_client()
    assert anonymous.post("/api/v1/trade/start", json=START).status_code == 201
    assert anonymous.patch("/api/v1/config", json={"max_positions": 4}).status_code == 200
    me = anonymous.get("/api/v1/auth/me").json
    assert (me["name"], me["role"], me["auth_enabled"]) == (None, "admin", False)
    assert_refused(anonymous.post("/api/v1/auth/token"), 403)
    monkeypatch.setenv("AUTH_DISABLED", "true")
    monkeypatch.setenv("API_HOST", "0.0.0.0")
    with pytest.raises(SystemExit, match="loopback"):
        Settings.from_env()
    monkeypatch.setenv("API_HOST", "127.0.0.1")
    monkeypatch.setenv("GUNICORN_BIND", "0.0.0.0:8080")
    with pytest.raises(SystemExit, match="loopback"):
        Settings.from_env()
    monkeypatch.setenv("GUNICORN_BIND", "[::1]:8080")
    assert Settings.from_env().auth_disabled
