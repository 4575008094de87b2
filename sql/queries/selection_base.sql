-- Every input row of a pool with what every method needs: ingest status, images, the first
-- inference error, and which facts are stored (each filter adds its scores from its source).
WITH errs AS (
    SELECT sample_id, arg_min(stage, stage) AS stage, arg_min(error_code, stage) AS error_code,
           arg_min(error_message, stage) AS error_message
    FROM inference_errors
    WHERE model_key = $model_key AND fact_key IN ($settings_key, $ace_key)
    GROUP BY sample_id
)
SELECT r.source_row, r.sample_id, r.row_status, r.error_code, r.error_message,
       len(s.image_paths) AS n_images, c.n_mm, c.n_text,
       e.stage AS inference_error_stage, e.error_code AS inference_error_code,
       e.error_message AS inference_error_message,
       a.sample_id IS NOT NULL AS has_attention
FROM pool_rows r
LEFT JOIN samples s ON s.sample_id = r.sample_id
LEFT JOIN cde_scores c ON c.sample_id = r.sample_id AND c.model_key = $model_key
                      AND c.settings_key = $settings_key
LEFT JOIN errs e ON e.sample_id = r.sample_id
LEFT JOIN attention_stats a ON a.sample_id = r.sample_id AND a.model_key = $model_key
                           AND a.ace_key = $ace_key
WHERE r.pool_id = $pool_id
ORDER BY r.source_row;
