-- Counts per (state, stage, reason) of one run, largest first; readmitted_from splits the
-- rebalancer's re-admissions by the filter that had dropped them.
SELECT state, stage, reason, readmitted_from, n FROM funnel_reasons WHERE run_id = $run_id
ORDER BY state, n DESC, reason, readmitted_from;
