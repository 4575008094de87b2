-- Per run: how many rows ended in each (state, stage, reason). readmitted_from: for a row its
-- rebalancer selected although a filter had dropped it (DRM's replacements), that filter's
-- stage (the first of the run's stages the row did not pass); NULL otherwise.
CREATE OR REPLACE VIEW funnel_reasons AS
SELECT d.run_id, d.state, d.stage, d.reason,
       CASE WHEN d.state = 'selected' AND d.stage = r.rebalancer
                 AND len(d.passed) < len(r.stages)
            THEN r.stages[len(d.passed) + 1] END AS readmitted_from,
       count(*) AS n
FROM decisions d JOIN selection_runs r USING (run_id)
GROUP BY ALL;
