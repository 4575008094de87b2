-- How many rows two runs on one pool selected: A only, B only, both (in that order).
SELECT side, count(*) AS n FROM (
    SELECT CASE WHEN a.state = 'selected' AND b.state = 'selected' THEN 'both'
                WHEN a.state = 'selected' THEN 'a_only'
                WHEN b.state = 'selected' THEN 'b_only' END AS side
    FROM decisions a JOIN decisions b USING (source_row)
    WHERE a.run_id = $run_a AND b.run_id = $run_b
) WHERE side IS NOT NULL
GROUP BY side ORDER BY CASE side WHEN 'a_only' THEN 0 WHEN 'b_only' THEN 1 ELSE 2 END;
