-- One selection run (a NULL id means the latest).
SELECT * FROM selection_runs
WHERE run_id = coalesce($run_id, (SELECT arg_max(run_id, created_at) FROM selection_runs));
