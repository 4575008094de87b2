-- Per run: pool -> after CDE -> after ACE -> after DRM, with errors and duplicates.
CREATE OR REPLACE VIEW funnel AS
SELECT run_id,
       count(*) AS pool_rows,
       count(*) FILTER (WHERE state = 'error') AS errors,
       count(*) FILTER (WHERE reason = 'duplicate_row') AS duplicates,
       count(*) FILTER (WHERE passed_cde) AS after_cde,
       count(*) FILTER (WHERE passed_ace) AS after_ace,
       count(*) FILTER (WHERE state = 'selected') AS after_drm
FROM decisions
GROUP BY run_id;
