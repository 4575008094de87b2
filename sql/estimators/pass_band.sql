-- pass_band's score: the multimodal pass rate (accuracy of the rollouts with the image).
SELECT sample_id, acc_mm
FROM cde_scores
WHERE model_key = $model_key AND settings_key = $settings_key
