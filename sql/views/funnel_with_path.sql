-- (named to sort after funnel_steps.sql, which it reads)
-- Per run: its method, rows in, errors, duplicates, selected, how many of those its
-- rebalancer brought back after a filter had dropped them, and the funnel as one line
-- ('1000 -> 329 -> 329 -> 329'; step by step in funnel_steps).
CREATE OR REPLACE VIEW funnel AS
SELECT d.run_id, r.method,
       count(*) AS pool_rows,
       count(*) FILTER (WHERE d.state = 'error') AS errors,
       count(*) FILTER (WHERE d.reason = 'duplicate_row') AS duplicates,
       count(*) FILTER (WHERE d.state = 'selected') AS selected,
       count(*) FILTER (WHERE d.state = 'selected' AND d.stage = r.rebalancer
                        AND len(d.passed) < len(r.stages)) AS readmitted,
       (SELECT string_agg(f.samples::VARCHAR, ' -> ' ORDER BY f.position)
        FROM funnel_steps f WHERE f.run_id = d.run_id) AS path
FROM decisions d JOIN selection_runs r USING (run_id)
GROUP BY d.run_id, r.method;
