-- Every row's scores and outcome in one run (the report's distributions).
SELECT state, stage, reason, acc_mm, acc_text, d, psi FROM decisions WHERE run_id = $run_id;
