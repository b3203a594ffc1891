"""Turn a credential (API key or token) into an :class:`Identity`, or refuse it.

Valid keys are cached per process, but only while that process hears revocations on the
``cryptofunk_access`` channel; without the listener every credential is looked up, so a revoked
key stops working at once either way. Failed attempts are counted per client IP and, past the
limit, answered with 429 before any lookup.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import replace
from typing import NamedTuple

from app.access import keys, tokens
from app.access.limits import Window, windows
from app.access.roles import Identity
from app.errors import TooManyRequests, Unauthenticated
from app.models import utcnow

MAX_CREDENTIAL_LENGTH = 1024
TOUCH_EVERY_SECONDS = 60.0
TOKEN_HINT = "get a token from POST /api/v1/auth/token"


class KeyCache:
    """Identities by key hash and by key id, bounded, cleared whenever trust lapses."""

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self.trusted = False
        self._by_hash: OrderedDict[bytes, Identity] = OrderedDict()
        self._by_id: dict[str, Identity] = {}

    def get_by_hash(self, digest: bytes) -> Identity | None:
        return self._by_hash.get(digest) if self.trusted else None

    def get_by_id(self, key_id: str) -> Identity | None:
        return self._by_id.get(key_id) if self.trusted else None

    def put(self, digest: bytes | None, identity: Identity) -> None:
        if not self.trusted:
            return
        if digest is not None:
            self._by_hash[digest] = identity
            if len(self._by_hash) > self.max_entries:
                self._by_hash.popitem(last=False)
        self._by_id[identity.key_id] = identity
        if len(self._by_id) > self.max_entries:
            self._by_id.clear()

    def invalidate(self, key_id: str) -> None:
        """A key changed (revoked): forget it everywhere in this process."""
        self._by_id.pop(key_id, None)
        for digest in [d for d, ident in self._by_hash.items() if ident.key_id == key_id]:
            del self._by_hash[digest]

    def trust(self, listening: bool) -> None:
        """Start or stop trusting cached entries; both directions start from empty."""
        self.trusted = listening
        self._by_hash.clear()
        self._by_id.clear()


key_cache = KeyCache()


class Credential(NamedTuple):
    """A credential as sent (a NamedTuple: one is made per request, and a frozen dataclass
    costs several times as much to build)."""

    value: str
    source: str  # "header" or "query"


class Authenticator:
    """Checks credentials for one process: ``jwt_secret`` signs tokens, ``counter`` counts
    failures per IP against ``failure_limit``."""

    def __init__(self, jwt_secret_source, counter, failure_limit: str, cache: KeyCache):
        self._jwt_secret_source = jwt_secret_source
        self._jwt_secret: str | None = None
        self.counter = counter
        self.failure_limit = failure_limit
        self.cache = cache
        self._touched_at: dict[str, float] = {}

    @property
    def jwt_secret(self) -> str:
        if self._jwt_secret is None:
            self._jwt_secret = self._jwt_secret_source()
        return self._jwt_secret

    def authenticate(self, credential: Credential | None, client_ip: str) -> Identity:
        """The identity behind ``credential``; 401 if there is none or it is bad, 429 once this
        IP has failed too often."""
        if credential is None:
            raise Unauthenticated(
                "authentication required",
                details="send an API key as X-API-Key: <key> or Authorization: Bearer <key or "
                "token>",
            )
        value = credential.value
        if tokens.looks_like_token(value):
            # Verified locally; only the status of its key is cached.
            identity = self._checked(client_ip, lambda: self._from_token(value))
        else:
            digest = keys.hash_key(value)
            identity = self.cache.get_by_hash(digest)
            if identity is None:
                identity = self._checked(client_ip, lambda: self._from_key(credential, digest))
        self._note_use(identity)
        return identity

    def _checked(self, client_ip: str, look_up) -> Identity:
        """``look_up()`` unless this IP is throttled; a failure counts against the IP."""
        self._refuse_if_throttled(client_ip)
        try:
            return look_up()
        except Unauthenticated:
            self._count_failure(client_ip)
            raise

    def _from_key(self, credential: Credential, digest: bytes) -> Identity:
        if len(credential.value) > MAX_CREDENTIAL_LENGTH:
            raise Unauthenticated("invalid credential", details="the credential is too long")
        if credential.source == "query":
            raise Unauthenticated(
                "invalid token",
                details=f"the token query parameter takes a signed token, never an API key; "
                f"{TOKEN_HINT}",
            )
        key = keys.find_active_by_hash(digest)
        if key is None:
            raise Unauthenticated("invalid API key", details="unknown or revoked key")
        identity = key.identity()
        self.cache.put(digest, identity)
        return identity

    def _from_token(self, token: str) -> Identity:
        if len(token) > MAX_CREDENTIAL_LENGTH:
            raise Unauthenticated("invalid credential", details="the credential is too long")
        try:
            claims = tokens.verify(token, self.jwt_secret)
        except tokens.InvalidToken as error:
            raise Unauthenticated(str(error), details=TOKEN_HINT) from None
        identity = self.cache.get_by_id(str(claims["kid"]))
        if identity is None:
            key = keys.find_active_by_id(str(claims["kid"]))
            if key is None:
                raise Unauthenticated("token revoked", details="the key of this token was revoked")
            identity = key.identity()
            self.cache.put(None, identity)
        return replace(identity, via="token")

    def _failure_window(self, client_ip: str) -> Window:
        return windows(self.failure_limit, f"authfail:ip:{client_ip}")[0]

    def _refuse_if_throttled(self, client_ip: str) -> None:
        state = self.counter.peek(self._failure_window(client_ip))
        if state.hits >= state.window.amount:
            raise _throttled(state.reset_at)

    def _count_failure(self, client_ip: str) -> None:
        (state,) = self.counter.hit([self._failure_window(client_ip)])
        if state.exceeded:
            raise _throttled(state.reset_at)

    def _note_use(self, identity: Identity) -> None:
        """Record ``last_used_at`` at the first use and then at most once a minute per key."""
        now = time.monotonic()
        if now - self._touched_at.get(identity.key_id, -TOUCH_EVERY_SECONDS) < TOUCH_EVERY_SECONDS:
            return
        if len(self._touched_at) > self.cache.max_entries:
            self._touched_at.clear()
        self._touched_at[identity.key_id] = now
        keys.touch([identity.key_id], utcnow())


def _throttled(reset_at: float) -> TooManyRequests:
    return TooManyRequests(
        "too many failed authentication attempts",
        details="this address sent too many bad credentials; wait before trying again",
        retry_after=int(reset_at - time.time()) + 1,
    )
