-- Every sampled response with its grade; condition is 'mm' (with images) or 'text' (images removed).
CREATE TABLE IF NOT EXISTS rollouts (
    sample_id        VARCHAR NOT NULL,
    model_key        VARCHAR NOT NULL,
    settings_key     VARCHAR NOT NULL,
    condition        VARCHAR NOT NULL,
    rollout_index    INTEGER NOT NULL,
    response         VARCHAR NOT NULL,
    token_ids        INTEGER[] NOT NULL,
    extracted_answer VARCHAR,
    correct          BOOLEAN NOT NULL,
    PRIMARY KEY (sample_id, model_key, settings_key, condition, rollout_index)
);
