-- Per run, every input row ends selected, dropped (with a reason) or error, with the filters it
-- passed and the scores it was judged on.
CREATE TABLE IF NOT EXISTS decisions (
    run_id     VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    sample_id  VARCHAR,
    state      VARCHAR NOT NULL,
    stage      VARCHAR NOT NULL,
    reason     VARCHAR NOT NULL,
    detail     VARCHAR,
    passed     VARCHAR[] NOT NULL,  -- the filters (stages) it passed, before rebalancing
    acc_mm     DOUBLE,
    acc_text   DOUBLE,
    d          DOUBLE,
    psi        DOUBLE,
    difficulty DOUBLE,
    group_name VARCHAR,  -- its group under the run's group key (view coverage)
    PRIMARY KEY (run_id, source_row)
);
