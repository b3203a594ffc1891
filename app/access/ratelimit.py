"""Per-client request limits: general routes and writes, per key (or per IP when anonymous).

Small allowances are counted exactly, one shared-counter round trip per request. A large one
(a bot's 6000/minute) is leased: a worker takes a block of at most 1/50 of it in one round trip
and serves that many requests from memory. The shared total never exceeds the limit; unused
blocks of other workers can refuse a client at most (workers x block) requests early.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from app.access.limits import Window, WindowState, windows
from app.access.roles import Identity
from app.errors import TooManyRequests

GENERAL = "general"
WRITE = "write"
# A lease is at most this fraction of a window's allowance (1/50 = 2 %).
LEASE_DIVISOR = 50
MAX_LEASES = 10_000


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


@dataclass
class Lease:
    """A block of requests a worker took from the shared count: ``previous`` hits were
    counted before it, per window."""

    windows: list[Window]
    previous: list[int]
    reset_at: list[float]
    size: int
    used: int = 0

    def take(self, kind: str) -> Verdict | None:
        """One request from the block, or None when it is used up or a window has ended."""
        if self.used >= self.size or min(self.reset_at) <= time.time():
            return None
        self.used += 1
        return Verdict(
            kind,
            [
                WindowState(window, previous + self.used, reset)
                for window, previous, reset in zip(
                    self.windows, self.previous, self.reset_at, strict=True
                )
            ],
        )


class RateLimiter:
    """Counts requests in the shared counter against the key's limits or the defaults."""

    def __init__(self, counter, general: str, write: str):
        self.counter = counter
        self.defaults = {GENERAL: general, WRITE: write}
        self._leases: dict[str, Lease] = {}

    def limit_text(self, identity: Identity, kind: str) -> str:
        own = identity.write_limit if kind == WRITE else identity.rate_limit
        return own or self.defaults[kind]

    def count(self, identity: Identity, client_ip: str, kind: str) -> Verdict:
        """Count one request; the caller refuses it when the verdict is exceeded."""
        scope = f"key:{identity.key_id}" if identity.key_id else f"ip:{client_ip}"
        spec = windows(self.limit_text(identity, kind), f"{kind}:{scope}")
        size = min(window.amount // LEASE_DIVISOR for window in spec)
        if size <= 1:
            return Verdict(kind, self.counter.hit(spec))
        name = spec[0].bucket
        lease = self._leases.get(name)
        if lease is not None and lease.windows == spec and (verdict := lease.take(kind)):
            return verdict
        return self._lease(name, spec, size, kind)

    def _lease(self, name: str, spec: list[Window], size: int, kind: str) -> Verdict:
        states = self.counter.hit(spec, cost=size)
        previous = [state.hits - size for state in states]
        granted = min(size, *(w.amount - p for w, p in zip(spec, previous, strict=True)))
        if granted <= 0:
            self._leases.pop(name, None)
            return Verdict(kind, [WindowState(s.window, p + 1, s.reset_at)
                                  for s, p in zip(states, previous, strict=True)])  # fmt: skip
        if len(self._leases) >= MAX_LEASES:
            self._leases.clear()
        lease = Lease(spec, previous, [state.reset_at for state in states], granted)
        self._leases[name] = lease
        return lease.take(kind) or Verdict(kind, self.counter.hit(spec))
