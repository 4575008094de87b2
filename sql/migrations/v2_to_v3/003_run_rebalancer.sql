-- Schema 2 -> 3: the rebalancer of a run.
ALTER TABLE selection_runs ADD COLUMN IF NOT EXISTS rebalancer VARCHAR DEFAULT 'drm';
