-- The group of every pool row under each group key read at ingest: a pool column (data_source,
-- source, category, ...) or a derived key (answer_kind; question_type of the builtin pool). A
-- row without a value for a key has no row here: its group is '(none)'.
CREATE TABLE IF NOT EXISTS pool_groups (
    pool_id     VARCHAR NOT NULL,
    source_row  BIGINT NOT NULL,
    group_key   VARCHAR NOT NULL,
    group_value VARCHAR NOT NULL,
    PRIMARY KEY (pool_id, source_row, group_key)
);
