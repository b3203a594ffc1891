-- Decision search (POST /api/v1/decisions/search).
--
-- Full text: a generated tsvector over what a decision says (reasoning weighs most, then the
-- model's response, then the prompt), with a GIN index.
ALTER TABLE llm_decisions ADD COLUMN search_document tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(reasoning, '')), 'A')
    || setweight(to_tsvector('english', coalesce(response, '')), 'B')
    || setweight(to_tsvector('english', coalesce(prompt, '')), 'C')
) STORED;
CREATE INDEX llm_decisions_search ON llm_decisions USING gin (search_document);

-- Misspelt and run-together queries: the words decisions use, each with its trigrams, so a
-- query word can be corrected to the nearest words actually written. The trigrams follow
-- pg_trgm's definition (lower case, alphanumerics only, two spaces before and one after),
-- computed here because the embedded PostgreSQL ships without the pg_trgm extension.
CREATE FUNCTION search_trigrams(word text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT substr(padded, i, 3)), '{}')
    FROM (SELECT '  ' || regexp_replace(lower(word), '[^a-z0-9]+', '', 'g') || ' ' AS padded) p,
         generate_series(1, greatest(length(padded) - 2, 0)) AS i
$$;

-- A word is a letter followed by letters, digits or '/' (so BTC/USDT is one word), 3 to 32
-- characters long; numbers are left out, or every price would become a word.
CREATE FUNCTION search_words(document text) RETURNS SETOF text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT DISTINCT word
    FROM regexp_split_to_table(lower(coalesce(document, '')), '[^a-z0-9/]+') AS word
    WHERE word ~ '^[a-z][a-z0-9/]{2,31}$'
$$;

CREATE TABLE decision_words (
    word     text PRIMARY KEY,
    trigrams text[] NOT NULL
);
CREATE INDEX decision_words_trigrams ON decision_words USING gin (trigrams);

CREATE FUNCTION decision_words_learn() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Sorted, so two decisions that bring the same new words lock them in the same order.
    INSERT INTO decision_words (word, trigrams)
    SELECT word, search_trigrams(word)
    FROM (
        SELECT search_words(NEW.reasoning) AS word
        UNION SELECT search_words(NEW.response)
        UNION SELECT search_words(NEW.prompt)
    ) found
    ORDER BY word
    ON CONFLICT (word) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER decision_words_learn AFTER INSERT ON llm_decisions
    FOR EACH ROW EXECUTE FUNCTION decision_words_learn();

INSERT INTO decision_words (word, trigrams)
SELECT word, search_trigrams(word)
FROM (
    SELECT search_words(reasoning) AS word FROM llm_decisions
    UNION SELECT search_words(response) FROM llm_decisions
    UNION SELECT search_words(prompt) FROM llm_decisions
) found
ON CONFLICT (word) DO NOTHING;

-- Text embeddings of the reasoning, written by the agents process when LLM_EMBEDDING_MODEL is
-- set. Kept beside the decision (a model's vectors have that model's dimension), so changing
-- the model never rewrites the decisions.
CREATE TABLE decision_text_embeddings (
    decision_id uuid NOT NULL REFERENCES llm_decisions (id) ON DELETE CASCADE,
    model       text NOT NULL,
    embedding   vector NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (decision_id, model)
);
CREATE INDEX decision_text_embeddings_model ON decision_text_embeddings (model);
