-- ACE's scores: psi in the log domain (product and per-column geometric mean) for sigma.
SELECT sample_id,
       psi_log(col_log_sums, $sigma, $ace_min_run) AS psi_log,
       psi_norm_log(col_log_sums, $sigma, $ace_min_run) AS psi_norm_log
FROM attention_stats
WHERE model_key = $model_key AND ace_key = $ace_key
