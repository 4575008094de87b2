-- CDE per sample, model and rollout settings: acc_mm, acc_text and D(x) = acc_mm - acc_text.
CREATE OR REPLACE VIEW cde_scores AS
SELECT sample_id, model_key, settings_key,
       count(*) FILTER (WHERE condition = 'mm') AS n_mm,
       count(*) FILTER (WHERE condition = 'text') AS n_text,
       avg(correct::INTEGER) FILTER (WHERE condition = 'mm') AS acc_mm,
       avg(correct::INTEGER) FILTER (WHERE condition = 'text') AS acc_text,
       -- rounded: 0.8 - 0.2 is 0.6000000000000001 in floating point, which would pass
       -- D > 0.6 (a threshold on the grid of D's values must cut every sample alike)
       round(avg(correct::INTEGER) FILTER (WHERE condition = 'mm')
             - avg(correct::INTEGER) FILTER (WHERE condition = 'text'), 12) AS d
FROM rollouts
GROUP BY sample_id, model_key, settings_key;
