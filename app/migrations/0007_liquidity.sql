-- One liquidity budget per tick: the engine records what resting orders left of the latest
-- tick of each symbol, and orders arriving after it draw on that remainder.
ALTER TABLE market_prices
    ADD COLUMN tick_id bigint,
    ADD COLUMN liquidity_left money_amount CHECK (liquidity_left >= 0);

-- The liquidity cap and the maximum price age are tuned at run time like the other limits.
ALTER TABLE config_overrides DROP CONSTRAINT config_overrides_key_check;
ALTER TABLE config_overrides ADD CONSTRAINT config_overrides_key_check CHECK (key IN (
    'trading_mode', 'initial_capital', 'max_positions', 'max_position_size', 'max_daily_loss',
    'max_drawdown', 'default_stop_loss', 'default_take_profit', 'min_confidence',
    'llm_approval_required', 'llm_temperature', 'llm_max_tokens', 'liquidity_participation',
    'max_price_age_seconds'));
