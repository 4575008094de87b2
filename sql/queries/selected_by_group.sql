-- Per row of a run's pool: its group in each of two runs (decisions.group_name; '(none)' for a
-- run from before groups), and whether each run selected it.
SELECT a.source_row, coalesce(a.group_name, '(none)') AS group_a,
       coalesce(b.group_name, '(none)') AS group_b,
       a.state = 'selected' AS in_a, b.state = 'selected' AS in_b
FROM decisions a
JOIN decisions b ON b.run_id = $run_b AND b.source_row = a.source_row
WHERE a.run_id = $run_a
ORDER BY a.source_row;
