-- One row per selection (select or retune): its method (the filters in order and the
-- rebalancer), the fact keys, and its parameters; every estimator's thresholds are in `params`
-- (view run_thresholds); the CDE/ACE/DRM columns are kept for queries written before.
CREATE TABLE IF NOT EXISTS selection_runs (
    run_id                 VARCHAR PRIMARY KEY,
    mode                   VARCHAR NOT NULL,
    base_run               VARCHAR,
    method                 VARCHAR NOT NULL DEFAULT 'rap',
    stages                 VARCHAR[] NOT NULL DEFAULT ['cde', 'ace'],
    rebalancer             VARCHAR,
    pool_id                VARCHAR NOT NULL,
    model_key              VARCHAR NOT NULL,
    settings_key           VARCHAR NOT NULL,
    ace_key                VARCHAR NOT NULL,
    lambda_c               DOUBLE NOT NULL,
    sigma                  DOUBLE NOT NULL,
    lambda_a               DOUBLE NOT NULL,
    ace_min_run            INTEGER NOT NULL,
    ace_direction          VARCHAR NOT NULL,
    ace_score              VARCHAR NOT NULL,
    drm_k                  VARCHAR NOT NULL,
    drm_require_positive_d BOOLEAN NOT NULL,
    params                 JSON NOT NULL,
    samples_inferred       INTEGER NOT NULL,
    samples_stored         INTEGER NOT NULL,
    n_rows                 INTEGER NOT NULL,
    n_selected             INTEGER NOT NULL,
    export_path            VARCHAR,
    mlflow_run_id          VARCHAR,
    created_at             TIMESTAMP DEFAULT current_timestamp
);
