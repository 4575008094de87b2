-- psi per selection run and sample, with that run's sigma and ace_min_run.
CREATE OR REPLACE VIEW ace_scores AS
SELECT r.run_id, a.sample_id, a.response_len,
       psi_log(a.col_log_sums, r.sigma, r.ace_min_run) AS psi_log,
       exp(least(psi_log(a.col_log_sums, r.sigma, r.ace_min_run), 700)) AS psi,
       psi_norm_log(a.col_log_sums, r.sigma, r.ace_min_run) AS psi_norm_log
FROM selection_runs r
JOIN attention_stats a ON a.model_key = r.model_key AND a.ace_key = r.ace_key;
