-- Runtime: engine leadership with a fencing epoch, agent work claimed per session and candle
-- with a lease, periodic jobs leased to one agents process, supervised process restarts, and
-- the arrivals index in the order the engine takes orders.

DROP INDEX orders_arrivals;
CREATE INDEX orders_arrivals ON orders (placed_at, id) WHERE accepted_at IS NULL AND status = 'NEW';

-- One row: who leads the engine, since which epoch, and when it last proved it is alive. Every
-- engine write transaction reads the epoch FOR KEY SHARE; a takeover bumps it FOR UPDATE, so a
-- superseded leader can never commit again.
CREATE TABLE engine_leader (
    id           int PRIMARY KEY CHECK (id = 1),
    epoch        bigint NOT NULL,
    holder       text NOT NULL,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- The agents' work: one row per session and closed candle. The holder of an unexpired lease
-- decides it; an expired lease is taken over with a new token, and only the current token may
-- record the decisions.
CREATE TABLE agent_claims (
    session_id  uuid NOT NULL REFERENCES trading_sessions (id) ON DELETE CASCADE,
    candle_at   timestamptz NOT NULL,
    token       uuid NOT NULL,
    holder      text NOT NULL,
    lease_until timestamptz NOT NULL,
    attempts    int NOT NULL DEFAULT 1,
    done_at     timestamptz,
    PRIMARY KEY (session_id, candle_at)
);
CREATE INDEX agent_claims_expired ON agent_claims (lease_until) WHERE done_at IS NULL;

-- Periodic jobs (outcome resolution, silent agents) run by whichever agents process leases them.
CREATE TABLE job_leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    lease_until timestamptz NOT NULL
);

-- A candle's decisions exist once: a second recording of the same one is refused.
ALTER TABLE llm_decisions ADD COLUMN candle_at timestamptz;
CREATE UNIQUE INDEX llm_decisions_once_per_candle
    ON llm_decisions (session_id, candle_at, agent_name, decision_type)
    WHERE candle_at IS NOT NULL;

-- Processes supervised by `python -m app run`: restarts are visible in GET /api/v1/status.
CREATE TABLE supervised_processes (
    name            text PRIMARY KEY,
    pid             int,
    started_at      timestamptz NOT NULL DEFAULT now(),
    restarts        int NOT NULL DEFAULT 0,
    last_exit_code  int,
    last_restart_at timestamptz
);
