-- Every threshold of every run, as the run recorded it in its parameters (any estimator's,
-- including ones added after the store was made: no schema change needed).
CREATE OR REPLACE VIEW run_thresholds AS
SELECT r.run_id, r.method, t.key AS name, t.value AS value
FROM selection_runs r, json_each(r.params, '$.thresholds') t;
