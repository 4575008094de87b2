-- Cards of two runs on one pool: a seeded sample of at most $per_group rows selected by A
-- only, by B only, and by both, with each run's outcome and the sample's scores under A.
WITH pair AS (
    SELECT a.source_row, a.sample_id, a.state AS a_state, a.stage AS a_stage,
           a.reason AS a_reason, b.state AS b_state, b.stage AS b_stage, b.reason AS b_reason,
           a.acc_mm, a.acc_text, a.d, a.psi, a.difficulty, a.group_name,
           CASE WHEN a.state = 'selected' AND b.state = 'selected' THEN 'both'
                WHEN a.state = 'selected' THEN 'a_only'
                WHEN b.state = 'selected' THEN 'b_only' END AS side
    FROM decisions a JOIN decisions b USING (source_row)
    WHERE a.run_id = $run_a AND b.run_id = $run_b
),
picked AS (
    SELECT * FROM pair WHERE side IS NOT NULL
    QUALIFY row_number() OVER (
        PARTITION BY side
        ORDER BY hash(coalesce(sample_id, '') || '/' || source_row || '/' || $seed),
                 source_row) <= $per_group
),
run AS (SELECT * FROM selection_runs WHERE run_id = $run_a)
SELECT p.*, s.question, s.answer, s.image_paths,
       f.mm_response, f.mm_correct, f.text_response, f.text_correct
FROM picked p CROSS JOIN run
LEFT JOIN samples s ON s.sample_id = p.sample_id
LEFT JOIN first_responses f ON f.sample_id = p.sample_id AND f.model_key = run.model_key
                           AND f.settings_key = run.settings_key
ORDER BY p.side, p.source_row;
