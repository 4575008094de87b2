-- Per sample, model and rollout settings: the first rollout (index 0) with and without the
-- image, as the report's cards show them.
CREATE OR REPLACE VIEW first_responses AS
SELECT sample_id, model_key, settings_key,
       any_value(response) FILTER (WHERE condition = 'mm') AS mm_response,
       any_value(correct) FILTER (WHERE condition = 'mm') AS mm_correct,
       any_value(response) FILTER (WHERE condition = 'text') AS text_response,
       any_value(correct) FILTER (WHERE condition = 'text') AS text_correct
FROM rollouts WHERE rollout_index = 0
GROUP BY sample_id, model_key, settings_key;
