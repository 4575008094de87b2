-- Every decision of one run, in input order.
SELECT * FROM decisions WHERE run_id = $run_id ORDER BY source_row;
