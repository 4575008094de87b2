-- Rollout settings keys: sampling parameters, the answer grader's version and the engine kind
-- (part of the key unless transformers).
CREATE TABLE IF NOT EXISTS rollout_settings (
    settings_key   VARCHAR PRIMARY KEY,
    m              INTEGER NOT NULL,
    temperature    DOUBLE NOT NULL,
    top_p          DOUBLE NOT NULL,
    max_new_tokens INTEGER NOT NULL,
    seed           BIGINT NOT NULL,
    grader_version VARCHAR NOT NULL,
    engine         VARCHAR DEFAULT 'transformers'
);
