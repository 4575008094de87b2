-- Samples with multimodal rollouts but no attention statistics yet, with the rollout to teacher-force
-- (the first correct one, or the first one, as the ACE settings say); an engine_unavailable
-- error is tried again.
SELECT s.sample_id, s.question, s.image_paths, s.system, o.rollout_index, o.token_ids,
       EXISTS (SELECT 1 FROM inference_errors e
               WHERE e.sample_id = s.sample_id AND e.model_key = $model_key
                 AND e.fact_key = $ace_key AND e.error_code = 'engine_unavailable')
           AS retrying
FROM pool_rows r
JOIN samples s USING (sample_id)
JOIN rollouts o ON o.sample_id = s.sample_id AND o.model_key = $model_key
               AND o.settings_key = $settings_key AND o.condition = 'mm'
WHERE r.pool_id = $pool_id AND r.row_status = 'ok'
  AND NOT EXISTS (SELECT 1 FROM attention_stats a
                  WHERE a.sample_id = s.sample_id AND a.model_key = $model_key
                    AND a.ace_key = $ace_key)
  AND NOT EXISTS (SELECT 1 FROM inference_errors e
                  WHERE e.sample_id = s.sample_id AND e.model_key = $model_key
                    AND e.fact_key = $ace_key AND e.error_code <> 'engine_unavailable')
QUALIFY row_number() OVER (
    PARTITION BY s.sample_id
    ORDER BY CASE WHEN $response_choice = 'first_correct' AND o.correct THEN 0 ELSE 1 END,
             o.rollout_index) = 1
ORDER BY min(r.source_row) OVER (PARTITION BY s.sample_id);
