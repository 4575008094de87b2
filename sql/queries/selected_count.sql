-- How many samples a run selected: the run named, else the latest rap run on the pool.
SELECT run_id, n_selected FROM selection_runs
WHERE CASE WHEN $run_id IS NULL THEN method = 'rap' AND pool_id = $pool_id
           ELSE run_id = $run_id END
ORDER BY created_at DESC
LIMIT 1;
