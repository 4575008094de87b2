-- Every pair of runs on the same pool: how many each selected, how many both did, Jaccard.
CREATE OR REPLACE VIEW run_overlap AS
WITH sel AS (SELECT run_id, sample_id FROM decisions WHERE state = 'selected'),
sizes AS (SELECT run_id, count(*) AS n FROM sel GROUP BY run_id),
shared AS (
    SELECT x.run_id AS run_a, y.run_id AS run_b, count(*) AS n
    FROM sel x JOIN sel y USING (sample_id)
    GROUP BY x.run_id, y.run_id
)
SELECT a.run_id AS run_a, b.run_id AS run_b, a.pool_id,
       coalesce(sa.n, 0) AS n_a, coalesce(sb.n, 0) AS n_b, coalesce(s.n, 0) AS n_both,
       coalesce(s.n, 0) / nullif(coalesce(sa.n, 0) + coalesce(sb.n, 0) - coalesce(s.n, 0), 0)
           AS jaccard
FROM selection_runs a
JOIN selection_runs b ON a.pool_id = b.pool_id
LEFT JOIN sizes sa ON sa.run_id = a.run_id
LEFT JOIN sizes sb ON sb.run_id = b.run_id
LEFT JOIN shared s ON s.run_a = a.run_id AND s.run_b = b.run_id;
