-- One row per distinct sample; sample_id is a content hash of question, answer, image bytes and
-- the sample's own system prompt (when it has one).
CREATE TABLE IF NOT EXISTS samples (
    sample_id    VARCHAR PRIMARY KEY,
    question     VARCHAR NOT NULL,
    answer       VARCHAR NOT NULL,
    image_paths  VARCHAR[] NOT NULL,
    image_sha256 VARCHAR[] NOT NULL,
    system       VARCHAR,
    first_seen   TIMESTAMP DEFAULT current_timestamp
);
