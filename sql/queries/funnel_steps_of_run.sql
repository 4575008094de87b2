-- The funnel of one run, step by step.
SELECT step, samples FROM funnel_steps WHERE run_id = $run_id ORDER BY position;
