-- Samples of a pool whose text-only rollouts were skipped: multimodal rollouts stored, none
-- right, no text-only rollout stored (the `text` fact's `skipped` in estimators/base.py).
SELECT count(*) AS n
FROM pool_rows r
JOIN cde_scores c ON c.sample_id = r.sample_id AND c.model_key = $model_key
                 AND c.settings_key = $settings_key
WHERE r.pool_id = $pool_id AND r.row_status = 'ok'
  AND c.n_mm > 0 AND c.n_text = 0 AND c.acc_mm = 0;
