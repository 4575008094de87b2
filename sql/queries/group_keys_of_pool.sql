-- The group keys stored for a pool, with how many distinct values and rows each has.
SELECT group_key, count(DISTINCT group_value) AS n_values, count(*) AS n_rows
FROM pool_groups WHERE pool_id = $pool_id
GROUP BY group_key ORDER BY group_key;
