-- Counts per (state, stage, reason) of one run, largest first.
SELECT state, stage, reason, n FROM funnel_reasons WHERE run_id = $run_id
ORDER BY state, n DESC, reason;
