-- Every input row: the sample it became (ok / duplicate) or why it could not be read (error).
CREATE TABLE IF NOT EXISTS pool_rows (
    pool_id       VARCHAR NOT NULL,
    source_row    BIGINT NOT NULL,
    sample_id     VARCHAR,
    row_status    VARCHAR NOT NULL,
    error_code    VARCHAR,
    error_message VARCHAR,
    PRIMARY KEY (pool_id, source_row)
);
