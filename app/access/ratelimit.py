"""Per-client request limits: general routes and writes, per key (or per IP when anonymous)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from app.access.limits import WindowState, windows
from app.access.roles import Identity
from app.errors import TooManyRequests

GENERAL = "general"
WRITE = "write"


@dataclass(frozen=True)
class Verdict:
    """The windows a request was counted in, after counting it."""

    kind: str
    states: list[WindowState]

    @property
    def tightest(self) -> WindowState:
        """The window that binds: an exceeded one first, else the one with least room left."""
        return min(self.states, key=lambda s: (not s.exceeded, s.remaining, -s.reset_at))

    @property
    def exceeded(self) -> bool:
        return any(state.exceeded for state in self.states)

    def retry_after(self) -> int:
        latest = max(s.reset_at for s in self.states if s.exceeded)
        return max(1, math.ceil(latest - time.time()))

    def headers(self) -> dict[str, str]:
        """The headers Flask-Limiter sends, for the binding window."""
        state = self.tightest
        return {
            "X-RateLimit-Limit": str(state.window.amount),
            "X-RateLimit-Remaining": str(state.remaining),
            "X-RateLimit-Reset": str(math.ceil(state.reset_at)),
        }

    def refusal(self, who: str) -> TooManyRequests:
        state = self.tightest
        return TooManyRequests(
            "rate limit exceeded",
            details=f"{who} may make {state.window.text} {self.kind} requests; retry later",
            retry_after=self.retry_after(),
        )


class RateLimiter:
    """Counts requests in the shared counter against the key's limits or the defaults."""

    def __init__(self, counter, general: str, write: str):
        self.counter = counter
        self.defaults = {GENERAL: general, WRITE: write}

    def limit_text(self, identity: Identity, kind: str) -> str:
        own = identity.write_limit if kind == WRITE else identity.rate_limit
        return own or self.defaults[kind]

    def count(self, identity: Identity, client_ip: str, kind: str) -> Verdict:
        """Count one request; the caller refuses it when the verdict is exceeded."""
        scope = f"key:{identity.key_id}" if identity.key_id else f"ip:{client_ip}"
        spec = windows(self.limit_text(identity, kind), f"{kind}:{scope}")
        return Verdict(kind, self.counter.hit(spec))
