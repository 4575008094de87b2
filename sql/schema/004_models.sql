-- Model keys: weights fingerprint + dtype + prompt template version (+ system prompt; + the
-- served model's name when the rollouts come from a server, engine 'openai').
CREATE TABLE IF NOT EXISTS models (
    model_key           VARCHAR PRIMARY KEY,
    model_path          VARCHAR NOT NULL,
    weights_fingerprint VARCHAR NOT NULL,
    dtype               VARCHAR NOT NULL,
    template_version    VARCHAR NOT NULL,
    system_prompt       VARCHAR,
    engine              VARCHAR DEFAULT 'transformers',
    served_model        VARCHAR,
    registered_at       TIMESTAMP DEFAULT current_timestamp
);
