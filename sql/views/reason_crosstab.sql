-- Every pair of runs on the same pool: how each input row ended in one against the other
-- (state and reason in run_a, state and reason in run_b, rows).
CREATE OR REPLACE VIEW reason_crosstab AS
SELECT a.run_id AS run_a, b.run_id AS run_b,
       a.state || ':' || a.reason AS ended_a, b.state || ':' || b.reason AS ended_b,
       count(*) AS n
FROM decisions a
JOIN selection_runs ra ON ra.run_id = a.run_id
JOIN selection_runs rb ON rb.pool_id = ra.pool_id
JOIN decisions b ON b.run_id = rb.run_id AND b.source_row = a.source_row
GROUP BY a.run_id, b.run_id, ended_a, ended_b;
