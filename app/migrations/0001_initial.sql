-- Core schema: sessions, orders, trades, positions, agents, LLM decisions, prices, config.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE DOMAIN money_amount AS numeric(36, 18);
CREATE DOMAIN trading_symbol AS text CHECK (VALUE ~ '^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$');

CREATE TABLE trading_sessions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    mode            text NOT NULL CHECK (mode IN ('PAPER', 'LIVE')),
    symbol          trading_symbol NOT NULL,
    exchange        text NOT NULL,
    status          text NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'PAUSED', 'STOPPED')),
    status_reason   text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    stopped_at      timestamptz,
    initial_capital money_amount NOT NULL CHECK (initial_capital > 0),
    final_capital   money_amount CHECK (final_capital >= 0),
    total_pnl       money_amount NOT NULL DEFAULT 0,
    total_trades    integer NOT NULL DEFAULT 0 CHECK (total_trades >= 0),
    winning_trades  integer NOT NULL DEFAULT 0 CHECK (winning_trades >= 0),
    losing_trades   integer NOT NULL DEFAULT 0 CHECK (losing_trades >= 0),
    max_drawdown    money_amount NOT NULL DEFAULT 0 CHECK (max_drawdown >= 0),
    sharpe_ratio    money_amount NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'STOPPED') = (stopped_at IS NOT NULL))
);
-- One RUNNING or PAUSED session per symbol and mode, enforced even under concurrent starts.
CREATE UNIQUE INDEX trading_sessions_one_active
    ON trading_sessions (symbol, mode) WHERE status IN ('RUNNING', 'PAUSED');
CREATE INDEX trading_sessions_started ON trading_sessions (started_at DESC);
CREATE INDEX trading_sessions_status ON trading_sessions (status, started_at DESC);
CREATE INDEX trading_sessions_symbol ON trading_sessions (symbol, mode, started_at DESC);

CREATE TABLE positions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id     uuid NOT NULL REFERENCES trading_sessions (id) ON DELETE CASCADE,
    symbol         trading_symbol NOT NULL,
    exchange       text NOT NULL,
    side           text NOT NULL CHECK (side IN ('LONG', 'SHORT')),
    status         text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'CLOSED')),
    entry_price    money_amount NOT NULL CHECK (entry_price > 0),
    exit_price     money_amount CHECK (exit_price > 0),
    quantity       money_amount NOT NULL CHECK (quantity > 0),
    entry_time     timestamptz NOT NULL DEFAULT now(),
    exit_time      timestamptz,
    stop_loss      money_amount CHECK (stop_loss > 0),
    take_profit    money_amount CHECK (take_profit > 0),
    realized_pnl   money_amount NOT NULL DEFAULT 0,
    unrealized_pnl money_amount NOT NULL DEFAULT 0,
    fees           money_amount NOT NULL DEFAULT 0 CHECK (fees >= 0),
    entry_reason   text,
    exit_reason    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'CLOSED') = (exit_time IS NOT NULL))
);
CREATE UNIQUE INDEX positions_one_open_per_symbol
    ON positions (session_id, symbol) WHERE status = 'OPEN';
CREATE INDEX positions_session ON positions (session_id, status, entry_time DESC);
CREATE INDEX positions_symbol ON positions (symbol, status, entry_time DESC);
CREATE INDEX positions_status ON positions (status, entry_time DESC);

CREATE TABLE orders (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id              uuid REFERENCES trading_sessions (id) ON DELETE CASCADE,
    position_id             uuid REFERENCES positions (id) ON DELETE SET NULL,
    exchange_order_id       text,
    symbol                  trading_symbol NOT NULL,
    exchange                text NOT NULL,
    side                    text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    type                    text NOT NULL CHECK (type IN ('MARKET', 'LIMIT', 'STOP_LOSS',
                                'STOP_LOSS_LIMIT', 'TAKE_PROFIT', 'TAKE_PROFIT_LIMIT')),
    status                  text NOT NULL DEFAULT 'NEW' CHECK (status IN ('NEW', 'PARTIALLY_FILLED',
                                'FILLED', 'CANCELED', 'REJECTED', 'EXPIRED')),
    price                   money_amount CHECK (price > 0),
    stop_price              money_amount CHECK (stop_price > 0),
    quantity                money_amount NOT NULL CHECK (quantity > 0),
    executed_quantity       money_amount NOT NULL DEFAULT 0
                                CHECK (executed_quantity >= 0 AND executed_quantity <= quantity),
    executed_quote_quantity money_amount NOT NULL DEFAULT 0 CHECK (executed_quote_quantity >= 0),
    time_in_force           text NOT NULL DEFAULT 'GTC' CHECK (time_in_force IN ('GTC', 'IOC', 'FOK')),
    source                  text NOT NULL DEFAULT 'manual',
    placed_at               timestamptz NOT NULL DEFAULT now(),
    filled_at               timestamptz,
    canceled_at             timestamptz,
    expired_at              timestamptz,
    error_message           text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (type NOT IN ('LIMIT', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT_LIMIT') OR price IS NOT NULL),
    CHECK (type NOT IN ('STOP_LOSS', 'STOP_LOSS_LIMIT', 'TAKE_PROFIT', 'TAKE_PROFIT_LIMIT')
           OR stop_price IS NOT NULL),
    CHECK ((status = 'CANCELED') = (canceled_at IS NOT NULL)),
    CHECK (status <> 'FILLED' OR filled_at IS NOT NULL)
);
CREATE INDEX orders_placed ON orders (placed_at DESC);
CREATE INDEX orders_session ON orders (session_id, placed_at DESC);
CREATE INDEX orders_symbol ON orders (symbol, placed_at DESC);
CREATE INDEX orders_status ON orders (status, placed_at DESC);
CREATE INDEX orders_side ON orders (side, placed_at DESC);
CREATE INDEX orders_position ON orders (position_id);
-- The matching engine scans only working orders.
CREATE INDEX orders_open ON orders (symbol, placed_at) WHERE status IN ('NEW', 'PARTIALLY_FILLED');

CREATE TABLE trades (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id         uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    session_id       uuid REFERENCES trading_sessions (id) ON DELETE CASCADE,
    position_id      uuid REFERENCES positions (id) ON DELETE SET NULL,
    symbol           trading_symbol NOT NULL,
    exchange         text NOT NULL,
    side             text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    price            money_amount NOT NULL CHECK (price > 0),
    quantity         money_amount NOT NULL CHECK (quantity > 0),
    quote_quantity   money_amount NOT NULL CHECK (quote_quantity >= 0),
    commission       money_amount NOT NULL DEFAULT 0 CHECK (commission >= 0),
    commission_asset text,
    executed_at      timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX trades_executed ON trades (executed_at DESC);
CREATE INDEX trades_order ON trades (order_id, executed_at);
CREATE INDEX trades_session ON trades (session_id, executed_at DESC);
CREATE INDEX trades_symbol ON trades (symbol, executed_at DESC);
CREATE INDEX trades_position ON trades (position_id);

CREATE TABLE agents (
    name                       text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    status                     text NOT NULL DEFAULT 'active'
                                   CHECK (status IN ('active', 'inactive', 'error')),
    last_seen_at               timestamptz NOT NULL DEFAULT now(),
    heartbeat_interval_seconds integer NOT NULL DEFAULT 30
                                   CHECK (heartbeat_interval_seconds BETWEEN 1 AND 86400),
    metadata                   jsonb NOT NULL DEFAULT '{}'::jsonb
                                   CHECK (jsonb_typeof(metadata) = 'object'),
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE llm_decisions (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    session_id        uuid REFERENCES trading_sessions (id) ON DELETE SET NULL,
    agent_name        text NOT NULL REFERENCES agents (name) ON UPDATE CASCADE,
    symbol            trading_symbol NOT NULL,
    decision_type     text NOT NULL CHECK (decision_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    decision          text NOT NULL CHECK (decision IN ('BUY', 'SELL', 'HOLD', 'CLOSE',
                          'APPROVE', 'REJECT')),
    confidence        numeric(6, 5) NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    reasoning         text NOT NULL DEFAULT '',
    context           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(context) = 'object'),
    prompt            text,
    response          text,
    prompt_embedding  vector(16),
    prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    model             text NOT NULL,
    outcome           text NOT NULL DEFAULT 'PENDING'
                          CHECK (outcome IN ('SUCCESS', 'FAILURE', 'PENDING')),
    actual_pnl        money_amount,
    latency_ms        integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    cost              money_amount NOT NULL DEFAULT 0 CHECK (cost >= 0),
    resolved_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((outcome = 'PENDING') = (resolved_at IS NULL))
);
CREATE INDEX llm_decisions_created ON llm_decisions (created_at DESC);
CREATE INDEX llm_decisions_symbol ON llm_decisions (symbol, created_at DESC);
CREATE INDEX llm_decisions_type ON llm_decisions (decision_type, created_at DESC);
CREATE INDEX llm_decisions_outcome ON llm_decisions (outcome, created_at DESC);
CREATE INDEX llm_decisions_model ON llm_decisions (model, created_at DESC);
CREATE INDEX llm_decisions_agent ON llm_decisions (agent_name, created_at DESC);
CREATE INDEX llm_decisions_session ON llm_decisions (session_id, created_at DESC);
CREATE INDEX llm_decisions_embedding ON llm_decisions
    USING hnsw (prompt_embedding vector_cosine_ops);

CREATE TABLE market_prices (
    symbol     trading_symbol PRIMARY KEY,
    price      money_amount NOT NULL CHECK (price > 0),
    volume     money_amount CHECK (volume >= 0),
    source     text NOT NULL DEFAULT 'manual',
    price_time timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE config_overrides (
    key        text PRIMARY KEY CHECK (key IN ('trading_mode', 'initial_capital', 'max_positions',
                   'max_position_size', 'max_daily_loss', 'max_drawdown', 'default_stop_loss',
                   'default_take_profit', 'min_confidence', 'llm_approval_required',
                   'llm_temperature', 'llm_max_tokens')),
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per web process: how many WebSocket clients it holds, refreshed while it lives.
CREATE TABLE ws_presence (
    process_id text PRIMARY KEY,
    clients    integer NOT NULL DEFAULT 0 CHECK (clients >= 0),
    seen_at    timestamptz NOT NULL DEFAULT now()
);
