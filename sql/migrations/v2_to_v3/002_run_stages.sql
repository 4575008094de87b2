-- Schema 2 -> 3: the filters of a run, in order.
ALTER TABLE selection_runs ADD COLUMN IF NOT EXISTS stages VARCHAR[] DEFAULT ['cde', 'ace'];
