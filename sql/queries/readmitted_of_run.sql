-- One run with a rebalancer: per filter stage, how many selected rows it had dropped (0 too).
WITH stages AS (
    SELECT unnest(stages) AS stage, generate_subscripts(stages, 1) AS position
    FROM selection_runs WHERE run_id = $run_id AND rebalancer IS NOT NULL
)
SELECT s.stage, coalesce(sum(f.n), 0)::BIGINT AS n
FROM stages s LEFT JOIN funnel_reasons f ON f.run_id = $run_id AND f.readmitted_from = s.stage
GROUP BY s.stage, s.position
ORDER BY s.position;
