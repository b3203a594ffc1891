-- Observability: each engine and agents process writes a heartbeat row with its counters, so
-- the web process's /metrics can export them (on a PaaS only the web process is scraped), and
-- readiness can tell an active engine from a standby one.
CREATE TABLE process_heartbeats (
    process_id text PRIMARY KEY,          -- host:pid
    kind       text NOT NULL,             -- worker (the engine), agents
    role       text NOT NULL,             -- active, standby (engine); running (agents); stopped
    started_at timestamptz NOT NULL,
    beat_at    timestamptz NOT NULL,
    metrics    jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX process_heartbeats_beat_at ON process_heartbeats (beat_at);
