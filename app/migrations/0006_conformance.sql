-- One definition of a healthy agent, used by the agent_status event and by the REST API alike:
-- active, and heard from within three heartbeat intervals.
CREATE FUNCTION cryptofunk_agent_is_healthy(
    status text, last_seen_at timestamptz, heartbeat_interval_seconds integer
) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT status = 'active'
       AND last_seen_at >= now() - make_interval(secs => 3 * heartbeat_interval_seconds)
$$;

CREATE OR REPLACE FUNCTION agents_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    healthy boolean := cryptofunk_agent_is_healthy(
        NEW.status, NEW.last_seen_at, NEW.heartbeat_interval_seconds);
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status
       AND NEW.last_seen_at - OLD.last_seen_at
           <= make_interval(secs => 3 * OLD.heartbeat_interval_seconds) THEN
        RETURN NULL;
    END IF;
    PERFORM cryptofunk_publish('agent_status', json_build_object(
        'name', NEW.name,
        'status', NEW.status,
        'last_seen_at', cryptofunk_ts(NEW.last_seen_at),
        'is_healthy', healthy,
        'metadata', NEW.metadata
    ), json_build_object('name', NEW.name, 'status', NEW.status,
                         'last_seen_at', cryptofunk_ts(NEW.last_seen_at),
                         'is_healthy', healthy));
    RETURN NULL;
END $$;
