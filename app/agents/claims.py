"""Work shared by any number of agents processes: candles claimed with a lease, periodic jobs.

A claim is a row per (session, closed candle) with a lease and a token. Whoever inserts it, or
takes it over once its lease has expired, gets a fresh token; only the holder of the current
token may record the candle's decisions (:func:`still_held`, checked in the final
transaction), and the unique key on decisions makes a second recording impossible anyway.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.db import db

# Each session's current candle is in market time: the candle its symbol's latest tick falls in
# (a replay runs faster than the wall clock), unless the caller names one candle for all.
CLAIM_NEW_SQL = """
WITH due AS (
    SELECT s.id AS session_id,
           COALESCE(%(candle)s::timestamptz,
                    to_timestamp(floor(extract(epoch FROM mp.price_time) / %(seconds)s)
                                 * %(seconds)s)) AS candle_at
      FROM trading_sessions s
      LEFT JOIN market_prices mp ON mp.symbol = s.symbol
     WHERE s.status IN ('RUNNING', 'PAUSED')
)
INSERT INTO agent_claims (session_id, candle_at, token, holder, lease_until)
SELECT session_id, candle_at, gen_random_uuid(), %(holder)s,
       now() + make_interval(secs => %(lease)s)
  FROM due
 WHERE candle_at IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM agent_claims c
                    WHERE c.session_id = due.session_id AND c.candle_at = due.candle_at)
 ORDER BY session_id
 LIMIT %(limit)s
ON CONFLICT (session_id, candle_at) DO NOTHING
RETURNING session_id, candle_at, token
"""

# A claim whose holder died (or froze) past its lease is taken over, while it is recent enough
# (next to the current candle) to be worth deciding; SKIP LOCKED lets several processes share
# the expired ones.
CLAIM_EXPIRED_SQL = """
UPDATE agent_claims
   SET token = gen_random_uuid(), holder = %(holder)s, attempts = attempts + 1,
       lease_until = now() + make_interval(secs => %(lease)s)
 WHERE (session_id, candle_at) IN (
        SELECT session_id, candle_at FROM agent_claims
         WHERE done_at IS NULL AND lease_until < now()
           AND candle_at > COALESCE(%(candle)s::timestamptz, now())
                           - make_interval(secs => %(stale)s)
         ORDER BY candle_at
         LIMIT %(limit)s
         FOR UPDATE SKIP LOCKED)
RETURNING session_id, candle_at, token
"""

STILL_HELD_SQL = """
SELECT 1 FROM agent_claims
 WHERE session_id = %s AND candle_at = %s AND token = %s AND done_at IS NULL
 FOR UPDATE
"""

LEASE_JOB_SQL = """
INSERT INTO job_leases (name, holder, lease_until)
VALUES (%(name)s, %(holder)s, now() + make_interval(secs => %(seconds)s))
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder, lease_until = EXCLUDED.lease_until
 WHERE job_leases.lease_until <= now()
RETURNING name
"""
HOLD_JOB_SQL = LEASE_JOB_SQL.replace(
    "WHERE job_leases.lease_until <= now()",
    "WHERE job_leases.lease_until <= now() OR job_leases.holder = EXCLUDED.holder",
)


@dataclass(frozen=True)
class Claim:
    """The right to decide one session's candle, for as long as the token is current."""

    session_id: uuid.UUID
    candle_at: datetime
    token: uuid.UUID


def claim_candles(
    candle_at: datetime | None,
    candle_seconds: int,
    holder: str,
    lease_seconds: float,
    stale_seconds: float,
    limit: int,
) -> list[Claim]:
    """Expired claims to take over first, then each active session's current candle.

    ``candle_at`` None: each session's candle in market time (its symbol's latest tick).
    """
    if limit <= 0:
        return []
    params = {
        "candle": candle_at,
        "seconds": candle_seconds,
        "holder": holder,
        "lease": lease_seconds,
        "stale": stale_seconds,
        "limit": limit,
    }
    with db.atomic():
        rows = list(db.execute_sql(CLAIM_EXPIRED_SQL, params).fetchall())
        params["limit"] = limit - len(rows)
        if params["limit"] > 0:
            rows += db.execute_sql(CLAIM_NEW_SQL, params).fetchall()
    return [Claim(uuid.UUID(str(s)), candle, uuid.UUID(str(t))) for s, candle, t in rows]


def still_held(claim: Claim) -> bool:
    """Inside the final transaction: lock the claim and check that its token is still ours."""
    cursor = db.execute_sql(STILL_HELD_SQL, (claim.session_id, claim.candle_at, claim.token))
    return cursor.fetchone() is not None


def complete(claim: Claim) -> None:
    db.execute_sql(
        "UPDATE agent_claims SET done_at = now() WHERE session_id = %s AND candle_at = %s "
        "AND token = %s",
        (claim.session_id, claim.candle_at, claim.token),
    )


def lease_job(name: str, holder: str, seconds: float) -> bool:
    """True when this process got the job ``name`` for the next ``seconds``."""
    params = {"name": name, "holder": holder, "seconds": seconds}
    with db.atomic():
        return db.execute_sql(LEASE_JOB_SQL, params).fetchone() is not None


def hold_job(name: str, holder: str, seconds: float) -> bool:
    """True when this process holds the job ``name`` for the next ``seconds``: it got it, or it
    already had it (a lasting job, such as embedding decisions, stays with one process while that
    process keeps renewing it)."""
    params = {"name": name, "holder": holder, "seconds": seconds}
    with db.atomic():
        return db.execute_sql(HOLD_JOB_SQL, params).fetchone() is not None


def release_all(holder: str) -> int:
    """Give up every unfinished claim and job lease of ``holder`` (a process shutting down):
    their leases end now, so another agents process takes them over at once instead of after
    the lease. Returns how many claims were released."""
    with db.atomic():
        released = db.execute_sql(
            "UPDATE agent_claims SET lease_until = now() - interval '1 millisecond' "
            "WHERE holder = %s AND done_at IS NULL AND lease_until > now()",
            (holder,),
        ).rowcount
        db.execute_sql(
            "UPDATE job_leases SET lease_until = now() WHERE holder = %s AND lease_until > now()",
            (holder,),
        )
    return released
