-- CDE per sample, model and rollout settings: acc_mm, acc_text and D(x) = acc_mm - acc_text.
CREATE OR REPLACE VIEW cde_scores AS
SELECT sample_id, model_key, settings_key,
       count(*) FILTER (WHERE condition = 'mm') AS n_mm,
       count(*) FILTER (WHERE condition = 'text') AS n_text,
       avg(correct::INTEGER) FILTER (WHERE condition = 'mm') AS acc_mm,
       avg(correct::INTEGER) FILTER (WHERE condition = 'text') AS acc_text,
       avg(correct::INTEGER) FILTER (WHERE condition = 'mm')
         - avg(correct::INTEGER) FILTER (WHERE condition = 'text') AS d
FROM rollouts
GROUP BY sample_id, model_key, settings_key;
