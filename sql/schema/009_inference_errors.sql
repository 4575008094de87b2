-- Samples the model could not process; fact_key is the settings_key (rollouts) or ace_key (attention).
CREATE TABLE IF NOT EXISTS inference_errors (
    sample_id     VARCHAR NOT NULL,
    model_key     VARCHAR NOT NULL,
    fact_key      VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    error_code    VARCHAR NOT NULL,
    error_message VARCHAR NOT NULL,
    PRIMARY KEY (sample_id, model_key, fact_key, stage)
);
