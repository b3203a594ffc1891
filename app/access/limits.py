"""Rate-limit windows and the counters shared by every worker and host.

Limits are written the `limits` way ("100/minute", "10/second;600/hour"). The default store is
an unlogged PostgreSQL table hit with one statement per request, whatever the number of
windows; ``RATELIMIT_STORAGE_URI`` (``redis://...``, ``memory://``) switches to a `limits`
storage instead.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import limits
from limits.storage import storage_from_string

from app.db import db
from app.errors import InvalidInput

MAX_WINDOWS = 4
MAX_WINDOW_SECONDS = 86_400
SWEEP_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Window:
    """One fixed window of a limit, counted under ``bucket``."""

    bucket: str
    amount: int
    seconds: int
    text: str


@dataclass(frozen=True)
class WindowState:
    window: Window
    hits: int
    reset_at: float  # epoch seconds

    @property
    def remaining(self) -> int:
        return max(0, self.window.amount - self.hits)

    @property
    def exceeded(self) -> bool:
        return self.hits > self.window.amount


@functools.lru_cache(maxsize=256)
def parse_limit(text: str, field: str = "limit") -> tuple[limits.RateLimitItem, ...]:
    """``"100/minute"`` or ``"10/second;600/hour"`` → its windows; 400 naming ``field`` if bad."""
    try:
        items = tuple(limits.parse_many(text))
    except ValueError:
        items = ()
    valid = (
        0 < len(items) <= MAX_WINDOWS
        and all(item.amount > 0 for item in items)
        and all(item.get_expiry() <= MAX_WINDOW_SECONDS for item in items)
    )
    if not valid:
        raise InvalidInput(
            f"invalid {field}",
            details=f"write a limit as COUNT/PERIOD, e.g. 6000/minute or 10/second;600/hour "
            f"(at most {MAX_WINDOWS} windows, each at most a day, counts above 0)",
            field=field,
        )
    return items


def windows(text: str, scope: str) -> list[Window]:
    """The windows of limit ``text`` counted for ``scope`` (e.g. ``general:key:<id>``)."""
    return [
        Window(
            bucket=f"{scope}:{item.amount}/{item.get_expiry()}",
            amount=item.amount,
            seconds=item.get_expiry(),
            text=str(item),
        )
        for item in parse_limit(text)
    ]


class PostgresCounter:
    """Fixed windows aligned to the database clock, in the unlogged ``rate_limit_windows``."""

    HIT = (
        "INSERT INTO rate_limit_windows AS w (bucket, window_end, hits) "
        "SELECT t.bucket, (floor(extract(epoch FROM now()) / t.seconds)::bigint + 1) * t.seconds, "
        "%s FROM unnest(%s::text[], %s::int[]) AS t(bucket, seconds) "
        "ON CONFLICT (bucket, window_end) DO UPDATE SET hits = w.hits + EXCLUDED.hits "
        "RETURNING bucket, hits, window_end"
    )
    PEEK = (
        "SELECT hits, window_end FROM rate_limit_windows WHERE bucket = %s "
        "AND window_end = (floor(extract(epoch FROM now()) / %s)::bigint + 1) * %s"
    )

    def __init__(self):
        self._last_sweep = 0.0

    def hit(self, windows_: list[Window], cost: int = 1) -> list[WindowState]:
        """Count one request in every window (one round trip); the states after counting."""
        self._sweep_now_and_then()
        cursor = db.execute_sql(
            self.HIT, (cost, [w.bucket for w in windows_], [w.seconds for w in windows_])
        )
        by_bucket = {bucket: (hits, end) for bucket, hits, end in cursor.fetchall()}
        return [WindowState(w, *by_bucket[w.bucket]) for w in windows_]

    def peek(self, window: Window) -> WindowState:
        """The current count of one window, without counting."""
        row = db.execute_sql(self.PEEK, (window.bucket, window.seconds, window.seconds)).fetchone()
        if row is None:
            return WindowState(window, 0, time.time() + window.seconds)
        return WindowState(window, row[0], float(row[1]))

    def _sweep_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_SECONDS:
            return
        self._last_sweep = now
        db.execute_sql(
            "DELETE FROM rate_limit_windows WHERE window_end < extract(epoch FROM now())"
        )


class LimitsStorageCounter:
    """Any `limits` storage (Redis, Memcached, memory); windows start at their first hit."""

    def __init__(self, uri: str):
        self.storage = storage_from_string(uri)

    def hit(self, windows_: list[Window], cost: int = 1) -> list[WindowState]:
        states = []
        for window in windows_:
            hits = self.storage.incr(window.bucket, window.seconds, amount=cost)
            states.append(WindowState(window, hits, self.storage.get_expiry(window.bucket)))
        return states

    def peek(self, window: Window) -> WindowState:
        hits = self.storage.get(window.bucket)
        reset = self.storage.get_expiry(window.bucket) if hits else time.time() + window.seconds
        return WindowState(window, hits, reset)


def counter_for(storage_uri: str | None):
    """The PostgreSQL counter by default, a `limits` storage when a URI names one."""
    return LimitsStorageCounter(storage_uri) if storage_uri else PostgresCounter()
