-- The funnel of one run.
SELECT * FROM funnel WHERE run_id = $run_id;
