-- Drop the engine_unavailable errors of samples whose facts have now been stored (the error
-- was the server's, not the sample's).
DELETE FROM inference_errors
WHERE error_code = 'engine_unavailable' AND model_key = $model_key AND fact_key = $fact_key
  AND stage = $stage AND list_contains($sample_ids, sample_id);
