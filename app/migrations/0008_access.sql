-- Access control: API keys (only a hash of each is stored), server-held secrets, shared rate
-- limit windows, the audit trail, and WebSocket connections counted per key.

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    role text NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
    -- SHA-256 of the key: keys are long random strings, so a fast hash is enough.
    key_hash bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    rate_limit text,
    write_limit text,
    ws_connections integer CHECK (ws_connections > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
-- A name is taken while its key is active; a revoked name can be issued again.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- Revocation reaches every web process at once through this channel (they cache lookups).
CREATE FUNCTION api_keys_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('cryptofunk_access', NEW.id::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_notify();

-- Secrets the server generates for itself (the JWT signing key when JWT_SECRET is unset).
CREATE TABLE server_secrets (
    name text PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Fixed rate-limit windows shared by every worker and host. Unlogged: counters are worth
-- nothing after a crash, and skipping the WAL keeps the per-request upsert cheap.
CREATE UNLOGGED TABLE rate_limit_windows (
    bucket text NOT NULL,
    window_end bigint NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (bucket, window_end)
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    key_name text,
    role text,
    method text NOT NULL,
    route text NOT NULL,
    path text NOT NULL,
    status integer NOT NULL,
    client_ip text,
    body jsonb
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_key_at ON audit_log (key_name, at DESC);

-- One row per open WebSocket, so a key's connections are counted across every worker.
CREATE TABLE ws_connections (
    id uuid PRIMARY KEY,
    key_name text NOT NULL,
    process_id text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ws_connections_key ON ws_connections (key_name);
