-- Samples of a pool whose text-only rollouts were skipped: multimodal rollouts stored, none
-- right, no text-only rollout stored.
SELECT count(*) AS n
FROM pool_rows r
WHERE r.pool_id = $pool_id AND r.row_status = 'ok'
  AND EXISTS (SELECT 1 FROM rollouts m WHERE m.sample_id = r.sample_id
              AND m.model_key = $model_key AND m.settings_key = $settings_key
              AND m.condition = 'mm')
  AND NOT EXISTS (SELECT 1 FROM rollouts m WHERE m.sample_id = r.sample_id
                  AND m.model_key = $model_key AND m.settings_key = $settings_key
                  AND m.condition = 'mm' AND m.correct)
  AND NOT EXISTS (SELECT 1 FROM rollouts t WHERE t.sample_id = r.sample_id
                  AND t.model_key = $model_key AND t.settings_key = $settings_key
                  AND t.condition = 'text');
