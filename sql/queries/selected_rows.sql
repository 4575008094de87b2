-- The selected samples of one run, in input order, with what an exporter needs.
SELECT d.source_row, d.sample_id, d.stage AS admitted_by, s.question, s.answer, s.image_paths,
       s.system, r.source_id, r.data_source
FROM decisions d JOIN samples s USING (sample_id)
JOIN selection_runs u USING (run_id)
LEFT JOIN pool_rows r ON r.pool_id = u.pool_id AND r.source_row = d.source_row
WHERE d.run_id = $run_id AND d.state = 'selected'
ORDER BY d.source_row;
