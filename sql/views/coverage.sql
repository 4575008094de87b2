-- Per run and group (the run's --group-by): the group's rows in the pool and in the selection,
-- their shares, and the ratio of the shares (1: the selection keeps the pool's proportion;
-- under 1: the group lost ground). Rows of runs from before groups are group '(none)'.
-- Only rows that could be selected count: not errors, nor rows ingest set aside (duplicates,
-- rows without an image), which no method or floor can select.
CREATE OR REPLACE VIEW coverage AS
WITH per_group AS (
    SELECT run_id, coalesce(group_name, '(none)') AS "group", count(*) AS pool_rows,
           count(*) FILTER (WHERE state = 'selected') AS selected_rows
    FROM decisions
    WHERE state <> 'error' AND stage <> 'ingest'
    GROUP BY ALL
), shares AS (
    SELECT run_id, "group", pool_rows,
           pool_rows / sum(pool_rows) OVER (PARTITION BY run_id) AS pool_share,
           selected_rows,
           selected_rows / nullif(sum(selected_rows) OVER (PARTITION BY run_id), 0)
               AS selected_share
    FROM per_group
)
SELECT run_id, "group", pool_rows, pool_share, selected_rows, selected_share,
       selected_share / pool_share AS ratio
FROM shares;
