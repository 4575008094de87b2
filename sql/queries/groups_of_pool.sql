-- Every row of a pool with its group under one key ('(none)' where it has no value).
SELECT r.source_row, coalesce(g.group_value, '(none)') AS group_name
FROM pool_rows r
LEFT JOIN pool_groups g ON g.pool_id = r.pool_id AND g.source_row = r.source_row
                       AND g.group_key = $group_key
WHERE r.pool_id = $pool_id
ORDER BY r.source_row;
