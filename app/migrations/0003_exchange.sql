-- Paper exchange: every tick, session cash and equity tracking, order acceptance/trigger times,
-- the equity curve, and a wake-up channel for the engine.

CREATE TABLE market_ticks (
    id           bigserial PRIMARY KEY,
    symbol       trading_symbol NOT NULL,
    price        money_amount NOT NULL CHECK (price > 0),
    volume       money_amount CHECK (volume >= 0),
    source       text NOT NULL DEFAULT 'manual',
    tick_time    timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- The engine works through unprocessed ticks in arrival order; the index stays tiny.
CREATE INDEX market_ticks_pending ON market_ticks (id) WHERE processed_at IS NULL;
CREATE INDEX market_ticks_symbol_time ON market_ticks (symbol, tick_time DESC);

ALTER TABLE trading_sessions
    ADD COLUMN cash money_amount,
    ADD COLUMN peak_equity money_amount,
    ADD COLUMN day_start_equity money_amount,
    ADD COLUMN day_start_date date;
UPDATE trading_sessions
   SET cash = initial_capital + total_pnl, peak_equity = initial_capital,
       day_start_equity = initial_capital, day_start_date = started_at::date;
ALTER TABLE trading_sessions
    ALTER COLUMN cash SET NOT NULL,
    ALTER COLUMN peak_equity SET NOT NULL,
    ALTER COLUMN day_start_equity SET NOT NULL,
    ALTER COLUMN day_start_date SET NOT NULL;

ALTER TABLE orders
    ADD COLUMN accepted_at timestamptz,
    ADD COLUMN triggered_at timestamptz;
CREATE INDEX orders_arrivals ON orders (placed_at) WHERE accepted_at IS NULL AND status = 'NEW';

ALTER TABLE positions
    ADD COLUMN closed_quantity money_amount NOT NULL DEFAULT 0 CHECK (closed_quantity >= 0),
    ADD COLUMN mark_price money_amount CHECK (mark_price > 0);

CREATE TABLE equity_snapshots (
    id             bigserial PRIMARY KEY,
    session_id     uuid NOT NULL REFERENCES trading_sessions (id) ON DELETE CASCADE,
    sampled_at     timestamptz NOT NULL DEFAULT now(),
    equity         money_amount NOT NULL,
    cash           money_amount NOT NULL,
    position_value money_amount NOT NULL,
    realized_pnl   money_amount NOT NULL,
    unrealized_pnl money_amount NOT NULL
);
CREATE INDEX equity_snapshots_session ON equity_snapshots (session_id, sampled_at);

-- The engine LISTENs here: a new order or tick wakes it at once instead of at its next poll.
CREATE FUNCTION cryptofunk_wake_engine() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cryptofunk_engine', TG_TABLE_NAME);
    RETURN NULL;
END $$;
CREATE TRIGGER orders_wake_engine AFTER INSERT ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION cryptofunk_wake_engine();
CREATE TRIGGER market_ticks_wake_engine AFTER INSERT ON market_ticks
    FOR EACH STATEMENT EXECUTE FUNCTION cryptofunk_wake_engine();
