-- Samples of a pool that still need rollouts under one condition (no stored rollout, no stored
-- error but engine_unavailable under this condition: a server that was down is asked again,
-- and a sample whose multimodal rollouts failed gets no text-only ones). Text-only rollouts only where one can change a decision (unless $all_rollouts): a
-- sample whose stored multimodal rollouts are all wrong (acc_mm = 0) can pass neither CDE
-- (D <= 0 <= lambda_c for every lambda_c >= 0) nor DRM (which needs acc_mm > 0).
-- retrying: the sample is asked again after engine_unavailable (its shard skips the task cache).
SELECT s.sample_id, s.question, s.answer, s.image_paths, s.system,
       EXISTS (SELECT 1 FROM inference_errors e
               WHERE e.sample_id = s.sample_id AND e.model_key = $model_key
                 AND e.fact_key = $settings_key AND e.error_code = 'engine_unavailable')
           AS retrying
FROM pool_rows r JOIN samples s USING (sample_id)
WHERE r.pool_id = $pool_id AND r.row_status = 'ok' AND len(s.image_paths) > 0
  AND NOT EXISTS (SELECT 1 FROM rollouts o
                  WHERE o.sample_id = s.sample_id AND o.model_key = $model_key
                    AND o.settings_key = $settings_key AND o.condition = $condition)
  AND NOT EXISTS (SELECT 1 FROM inference_errors e
                  WHERE e.sample_id = s.sample_id AND e.model_key = $model_key
                    AND e.fact_key = $settings_key
                    AND NOT (e.error_code = 'engine_unavailable'
                             AND e.stage = CASE $condition WHEN 'mm' THEN 'multimodal'
                                                           ELSE 'text_only' END))
  AND ($condition <> 'text' OR $all_rollouts
       OR EXISTS (SELECT 1 FROM rollouts m
                  WHERE m.sample_id = s.sample_id AND m.model_key = $model_key
                    AND m.settings_key = $settings_key AND m.condition = 'mm' AND m.correct))
ORDER BY r.source_row;
