-- Schema 2 -> 3: a run's method, its filters in order and its rebalancer (all runs were RAP's).
ALTER TABLE selection_runs ADD COLUMN IF NOT EXISTS method VARCHAR DEFAULT 'rap';
