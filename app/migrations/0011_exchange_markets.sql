-- Real markets through ccxt (the exchange process, app/exchange).
--
-- The markets an exchange lists, with the rules an order must respect there, as the exchange
-- process last loaded them. The web and the agents read them here: they never call the
-- exchange themselves.
CREATE TABLE exchange_markets (
    exchange     text NOT NULL,
    symbol       text NOT NULL,
    active       boolean NOT NULL,
    tick_size    numeric,          -- prices are multiples of it
    lot_size     numeric,          -- quantities are multiples of it
    min_quantity numeric,
    max_quantity numeric,
    min_notional numeric,          -- price × quantity at least this
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol)
);

-- One leader per exchange account, like the engine: engine_leader keeps the engine's row (1),
-- and an exchange process leads the row of its lock key.
ALTER TABLE engine_leader DROP CONSTRAINT engine_leader_id_check;
