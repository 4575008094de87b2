-- Per run, the funnel step by step: pool rows, then after each filter of its method in order,
-- then after its rebalancer and its coverage floor (the selection). Built from the run's own
-- list of stages.
CREATE OR REPLACE VIEW funnel_steps AS
WITH steps AS (
    SELECT run_id, 0 AS position, 'pool_rows' AS step, NULL AS stage FROM selection_runs
    UNION ALL
    SELECT run_id, generate_subscripts(stages, 1) AS position, 'after_' || unnest(stages),
           unnest(stages)
    FROM selection_runs
    UNION ALL
    SELECT run_id, len(stages) + 1, 'after_' || rebalancer, NULL
    FROM selection_runs WHERE rebalancer IS NOT NULL
    UNION ALL
    -- the coverage floor, where the run set one (rap_core/estimators/coverage.py)
    SELECT run_id, len(stages) + 2, 'after_coverage', NULL
    FROM selection_runs
    WHERE TRY_CAST(json_extract_string(params, '$.thresholds.coverage_floor') AS DOUBLE) > 0
)
SELECT s.run_id, s.position, s.step,
       CASE WHEN s.position = 0 THEN count(*)
            WHEN s.stage IS NOT NULL THEN count(*) FILTER (WHERE list_contains(d.passed, s.stage))
            ELSE count(*) FILTER (WHERE d.state = 'selected') END AS samples
FROM steps s JOIN decisions d USING (run_id)
GROUP BY s.run_id, s.position, s.step, s.stage;
