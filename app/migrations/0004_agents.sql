-- Agents and outcomes: which order and position a decision led to, when an unacted decision is
-- judged, the price it was made at, and the last candle each session's agents decided on.
ALTER TABLE llm_decisions
    ADD COLUMN order_id uuid REFERENCES orders (id) ON DELETE SET NULL,
    ADD COLUMN position_id uuid REFERENCES positions (id) ON DELETE SET NULL,
    ADD COLUMN reference_price money_amount CHECK (reference_price > 0),
    ADD COLUMN resolve_after timestamptz;
CREATE INDEX llm_decisions_pending ON llm_decisions (resolve_after)
    WHERE outcome = 'PENDING';
CREATE INDEX llm_decisions_position ON llm_decisions (position_id) WHERE position_id IS NOT NULL;
CREATE INDEX llm_decisions_order ON llm_decisions (order_id) WHERE order_id IS NOT NULL;

ALTER TABLE trading_sessions ADD COLUMN last_candle_at timestamptz;

-- Responses of the LLM gateway by prompt hash (enable_caching), shared by engine restarts.
CREATE TABLE llm_cache (
    prompt_hash text NOT NULL,
    model       text NOT NULL,
    response    text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (prompt_hash, model)
);
