-- CDE's scores: accuracy with and without the image, and D(x) = acc_mm - acc_text.
SELECT sample_id, acc_mm, acc_text, d
FROM cde_scores
WHERE model_key = $model_key AND settings_key = $settings_key
