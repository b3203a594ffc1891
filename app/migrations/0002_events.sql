-- Live events: every change a client should see is published with pg_notify by a trigger, in the
-- same transaction as the write. Payloads are the WebSocket envelope {type, timestamp, data}.

-- Engine, configuration and failure events that are not a change of some other row.
CREATE TABLE system_events (
    id         bigserial PRIMARY KEY,
    type       text NOT NULL CHECK (type IN ('system_status', 'error')),
    data       jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX system_events_created ON system_events (created_at DESC);

CREATE FUNCTION cryptofunk_ts(value timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- Publish one envelope. json (not jsonb) keeps the key order of the spec. NOTIFY payloads must
-- stay under 8000 bytes: an oversized event is sent in its compact form, marked truncated.
CREATE FUNCTION cryptofunk_publish(event_type text, data json, compact json DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    stamp text := cryptofunk_ts(clock_timestamp());
    payload text;
BEGIN
    payload := json_build_object('type', event_type, 'timestamp', stamp, 'data', data)::text;
    IF octet_length(payload) > 7900 THEN
        payload := json_build_object(
            'type', event_type, 'timestamp', stamp,
            'data', (COALESCE(compact::jsonb, '{}'::jsonb) || '{"truncated": true}'::jsonb)
        )::text;
    END IF;
    PERFORM pg_notify('cryptofunk_events', payload);
END $$;

CREATE FUNCTION orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status = OLD.status
       AND NEW.executed_quantity = OLD.executed_quantity THEN
        RETURN NULL;
    END IF;
    PERFORM cryptofunk_publish('order_update', json_build_object(
        'order_id', NEW.id,
        'session_id', NEW.session_id,
        'symbol', NEW.symbol,
        'side', NEW.side,
        'type', NEW.type,
        'status', NEW.status,
        'price', trim_scale(NEW.price),
        'quantity', trim_scale(NEW.quantity),
        'executed_quantity', trim_scale(NEW.executed_quantity),
        'executed_quote_quantity', trim_scale(NEW.executed_quote_quantity),
        'filled_at', cryptofunk_ts(NEW.filled_at),
        'canceled_at', cryptofunk_ts(NEW.canceled_at),
        'error_message', NEW.error_message
    ), json_build_object('order_id', NEW.id, 'session_id', NEW.session_id,
                         'symbol', NEW.symbol, 'status', NEW.status));
    IF NEW.status = 'REJECTED' AND (TG_OP = 'INSERT' OR OLD.status <> 'REJECTED') THEN
        PERFORM cryptofunk_publish('error', json_build_object(
            'error', 'Order rejected',
            'details', COALESCE(NEW.error_message, 'rejected by the exchange'),
            'severity', 'high',
            'metadata', json_build_object('order_id', NEW.id, 'session_id', NEW.session_id,
                                          'symbol', NEW.symbol)
        ), json_build_object('error', 'Order rejected', 'severity', 'high',
                             'metadata', json_build_object('order_id', NEW.id)));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER orders_notify AFTER INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_notify();

CREATE FUNCTION trades_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cryptofunk_publish('trade', json_build_object(
        'trade_id', NEW.id,
        'order_id', NEW.order_id,
        'session_id', NEW.session_id,
        'symbol', NEW.symbol,
        'side', NEW.side,
        'price', trim_scale(NEW.price),
        'quantity', trim_scale(NEW.quantity),
        'commission', trim_scale(NEW.commission),
        'executed_at', cryptofunk_ts(NEW.executed_at)
    ));
    RETURN NULL;
END $$;
CREATE TRIGGER trades_notify AFTER INSERT ON trades
    FOR EACH ROW EXECUTE FUNCTION trades_notify();

CREATE FUNCTION positions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND
       (NEW.status, NEW.side, NEW.quantity, NEW.entry_price, NEW.exit_price, NEW.unrealized_pnl,
        NEW.realized_pnl, NEW.fees, NEW.stop_loss, NEW.take_profit)
       IS NOT DISTINCT FROM
       (OLD.status, OLD.side, OLD.quantity, OLD.entry_price, OLD.exit_price, OLD.unrealized_pnl,
        OLD.realized_pnl, OLD.fees, OLD.stop_loss, OLD.take_profit) THEN
        RETURN NULL;
    END IF;
    PERFORM cryptofunk_publish('position_update', json_build_object(
        'position_id', NEW.id,
        'session_id', NEW.session_id,
        'symbol', NEW.symbol,
        'side', NEW.side,
        'status', NEW.status,
        'entry_price', trim_scale(NEW.entry_price),
        'exit_price', trim_scale(NEW.exit_price),
        'quantity', trim_scale(NEW.quantity),
        'unrealized_pnl', trim_scale(NEW.unrealized_pnl),
        'realized_pnl', trim_scale(NEW.realized_pnl),
        'fees', trim_scale(NEW.fees),
        'stop_loss', trim_scale(NEW.stop_loss),
        'take_profit', trim_scale(NEW.take_profit),
        'exit_reason', NEW.exit_reason
    ), json_build_object('position_id', NEW.id, 'session_id', NEW.session_id,
                         'symbol', NEW.symbol, 'status', NEW.status));
    RETURN NULL;
END $$;
CREATE TRIGGER positions_notify AFTER INSERT OR UPDATE ON positions
    FOR EACH ROW EXECUTE FUNCTION positions_notify();

-- An agent event on registration, on a status change, and when a heartbeat ends a silence long
-- enough to have made it unhealthy (three missed intervals).
CREATE FUNCTION agents_notify() RETURNS trigger LANGUAGE plpgsql AS $$
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
        'is_healthy', NEW.status = 'active',
        'metadata', NEW.metadata
    ), json_build_object('name', NEW.name, 'status', NEW.status,
                         'last_seen_at', cryptofunk_ts(NEW.last_seen_at),
                         'is_healthy', NEW.status = 'active'));
    RETURN NULL;
END $$;
CREATE TRIGGER agents_notify AFTER INSERT OR UPDATE ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_notify();

CREATE FUNCTION trading_sessions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    change text;
    message text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        change := 'trading_started'; message := 'Trading session started';
    ELSIF NEW.status = OLD.status THEN
        RETURN NULL;
    ELSIF NEW.status = 'PAUSED' THEN
        change := 'trading_paused'; message := 'Trading session paused';
    ELSIF NEW.status = 'RUNNING' THEN
        change := 'trading_resumed'; message := 'Trading session resumed';
    ELSE
        change := 'trading_stopped'; message := 'Trading session stopped';
    END IF;
    PERFORM cryptofunk_publish('system_status', json_build_object(
        'status', change,
        'message', message,
        'metadata', json_build_object(
            'session_id', NEW.id,
            'symbol', NEW.symbol,
            'mode', NEW.mode,
            'reason', NEW.status_reason,
            'final_capital', trim_scale(NEW.final_capital),
            'total_pnl', trim_scale(NEW.total_pnl)
        )
    ));
    RETURN NULL;
END $$;
CREATE TRIGGER trading_sessions_notify AFTER INSERT OR UPDATE ON trading_sessions
    FOR EACH ROW EXECUTE FUNCTION trading_sessions_notify();

CREATE FUNCTION llm_decisions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.outcome = OLD.outcome THEN
        RETURN NULL;
    END IF;
    PERFORM cryptofunk_publish('decision', json_build_object(
        'id', NEW.id,
        'agent_name', NEW.agent_name,
        'session_id', NEW.session_id,
        'symbol', NEW.symbol,
        'decision_type', NEW.decision_type,
        'decision', NEW.decision,
        'confidence', trim_scale(NEW.confidence),
        'model', NEW.model,
        'outcome', NEW.outcome,
        'actual_pnl', trim_scale(NEW.actual_pnl)
    ));
    RETURN NULL;
END $$;
CREATE TRIGGER llm_decisions_notify AFTER INSERT OR UPDATE ON llm_decisions
    FOR EACH ROW EXECUTE FUNCTION llm_decisions_notify();

CREATE FUNCTION system_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cryptofunk_publish(NEW.type, NEW.data::json,
                               json_build_object('status', NEW.data ->> 'status',
                                                 'error', NEW.data ->> 'error'));
    RETURN NULL;
END $$;
CREATE TRIGGER system_events_notify AFTER INSERT ON system_events
    FOR EACH ROW EXECUTE FUNCTION system_events_notify();
