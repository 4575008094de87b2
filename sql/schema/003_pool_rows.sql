-- Every input row: the sample it became (ok / duplicate) or why it could not be read (error).
CREATE TABLE IF NOT EXISTS pool_rows (
    pool_id       VARCHAR NOT NULL,
    source_row    BIGINT NOT NULL,
    sample_id     VARCHAR,
    row_status    VARCHAR NOT NULL,
    error_code    VARCHAR,
    error_message VARCHAR,
    source_id     VARCHAR,  -- the row's own id in its file (id, extra_info.index), if any
    data_source   VARCHAR,  -- verl's data_source, if any
    PRIMARY KEY (pool_id, source_row)
);
