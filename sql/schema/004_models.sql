-- Model keys: weights fingerprint + dtype + prompt template version (+ system prompt).
CREATE TABLE IF NOT EXISTS models (
    model_key           VARCHAR PRIMARY KEY,
    model_path          VARCHAR NOT NULL,
    weights_fingerprint VARCHAR NOT NULL,
    dtype               VARCHAR NOT NULL,
    template_version    VARCHAR NOT NULL,
    system_prompt       VARCHAR,
    registered_at       TIMESTAMP DEFAULT current_timestamp
);
