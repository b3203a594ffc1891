-- LIVE trading on an exchange account (the exchange process, app/exchange/account.py).
--
-- A LIVE order is sent by the exchange process, never by the engine: sent_at is when it began
-- sending (before the request, so a lost answer is looked up by client order id and never sent
-- twice), settled_at when the exchange's final state and every fill of it have been applied.
ALTER TABLE orders ADD COLUMN sent_at timestamptz;
ALTER TABLE orders ADD COLUMN settled_at timestamptz;
CREATE INDEX orders_exchange_work ON orders (placed_at, id)
    WHERE exchange <> 'PAPER' AND settled_at IS NULL;
-- The engine's arrivals (and the API's back-pressure check) are PAPER orders only.
DROP INDEX orders_arrivals;
CREATE INDEX orders_arrivals ON orders (placed_at, id)
    WHERE accepted_at IS NULL AND status = 'NEW' AND exchange = 'PAPER';

-- Each exchange trade applied once: its id on the exchange is the key.
CREATE TABLE exchange_fills (
    exchange   text NOT NULL,
    trade_id   text NOT NULL,
    order_id   uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, trade_id)
);
CREATE INDEX exchange_fills_order ON exchange_fills (order_id);

-- The latest price of a symbol on the exchange LIVE sessions trade on: they are marked to it,
-- whatever MARKET_FEED is.
CREATE TABLE exchange_prices (
    exchange   text NOT NULL,
    symbol     text NOT NULL,
    price      numeric NOT NULL,
    price_time timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol)
);

-- The account's health as the exchange process last read it: the web refuses a LIVE start
-- when the clock, the balance or the markets could not be read.
CREATE TABLE exchange_accounts (
    exchange        text PRIMARY KEY,
    checked_at      timestamptz NOT NULL,
    clock_offset_ms integer,
    balances        jsonb,
    markets         integer NOT NULL DEFAULT 0,
    problem         text
);
