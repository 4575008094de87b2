-- Per row of a run's pool: its data_source and answer, and whether each of two runs selected it.
SELECT r.source_row, r.data_source, s.answer,
       a.state = 'selected' AS in_a, b.state = 'selected' AS in_b
FROM decisions a
JOIN decisions b ON b.run_id = $run_b AND b.source_row = a.source_row
JOIN selection_runs ra ON ra.run_id = a.run_id
JOIN pool_rows r ON r.pool_id = ra.pool_id AND r.source_row = a.source_row
LEFT JOIN samples s ON s.sample_id = r.sample_id
WHERE a.run_id = $run_a
ORDER BY r.source_row;
