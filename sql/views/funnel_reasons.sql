-- Per run: how many rows ended in each (state, stage, reason).
CREATE OR REPLACE VIEW funnel_reasons AS
SELECT run_id, state, stage, reason, count(*) AS n
FROM decisions
GROUP BY run_id, state, stage, reason;
