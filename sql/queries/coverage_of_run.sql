-- One run's composition per group (view coverage), largest group first.
SELECT "group", pool_rows, pool_share, selected_rows, selected_share, ratio
FROM coverage WHERE run_id = $run_id
ORDER BY pool_rows DESC, "group";
