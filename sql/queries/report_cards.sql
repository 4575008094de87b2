-- The cards of a run's report: a seeded sample of at most $per_reason rows per (state, stage,
-- reason, readmitted_from), each with its sample, scores, and first multimodal and text-only
-- responses under the run's model and rollout settings.
WITH run AS (SELECT * FROM selection_runs WHERE run_id = $run_id),
rows AS (
    SELECT d.*,
           CASE WHEN d.state = 'selected' AND d.stage = run.rebalancer
                     AND len(d.passed) < len(run.stages)
                THEN run.stages[len(d.passed) + 1] END AS readmitted_from
    FROM decisions d, run WHERE d.run_id = $run_id
),
picked AS (
    SELECT * FROM rows
    QUALIFY row_number() OVER (
        PARTITION BY state, stage, reason, readmitted_from
        ORDER BY hash(coalesce(sample_id, '') || '/' || source_row || '/' || $seed),
                 source_row) <= $per_reason
)
SELECT p.source_row, p.sample_id, p.state, p.stage, p.reason, p.readmitted_from, p.detail,
       p.acc_mm, p.acc_text, p.d, p.psi, p.difficulty, p.group_name,
       s.question, s.answer, s.image_paths,
       f.mm_response, f.mm_correct, f.text_response, f.text_correct
FROM picked p CROSS JOIN run
LEFT JOIN samples s ON s.sample_id = p.sample_id
LEFT JOIN first_responses f ON f.sample_id = p.sample_id AND f.model_key = run.model_key
                           AND f.settings_key = run.settings_key
ORDER BY p.state, p.stage, p.reason, p.readmitted_from NULLS FIRST, p.source_row;
