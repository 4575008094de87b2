-- All errors in one place: rows that could not be read, samples the model could not process.
CREATE OR REPLACE VIEW errors AS
SELECT 'ingest' AS stage, pool_id AS scope, source_row, sample_id, error_code, error_message
FROM pool_rows WHERE row_status = 'error'
UNION ALL
SELECT stage, model_key AS scope, NULL AS source_row, sample_id, error_code, error_message
FROM inference_errors;
