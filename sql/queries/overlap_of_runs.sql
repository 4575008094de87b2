-- The overlap of two runs' selections (run_overlap for one pair).
SELECT * FROM run_overlap WHERE run_a = $run_a AND run_b = $run_b;
