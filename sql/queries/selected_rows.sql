-- The selected samples of one run, in input order, with what an exporter needs.
SELECT d.source_row, d.sample_id, d.stage AS admitted_by, s.question, s.answer, s.image_paths
FROM decisions d JOIN samples s USING (sample_id)
WHERE d.run_id = $run_id AND d.state = 'selected'
ORDER BY d.source_row;
