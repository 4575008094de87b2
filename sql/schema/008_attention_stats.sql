-- Final-layer attention over one response, reduced to S_j = sum_{i>=j} log A[i, j] per column j.
CREATE TABLE IF NOT EXISTS attention_stats (
    sample_id     VARCHAR NOT NULL,
    model_key     VARCHAR NOT NULL,
    ace_key       VARCHAR NOT NULL,
    rollout_index INTEGER NOT NULL,
    response_len  INTEGER NOT NULL,
    col_log_sums  DOUBLE[] NOT NULL,
    PRIMARY KEY (sample_id, model_key, ace_key)
);
