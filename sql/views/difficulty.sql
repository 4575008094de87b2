-- DRM difficulty: 1 - acc_mm (group accuracy of the multimodal rollouts).
CREATE OR REPLACE VIEW difficulty AS
SELECT sample_id, model_key, settings_key, acc_mm, 1 - acc_mm AS difficulty
FROM cde_scores
WHERE n_mm > 0;
