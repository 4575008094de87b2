-- Schema 3 -> 4: the served model's name, for rollouts from a server.
ALTER TABLE models ADD COLUMN IF NOT EXISTS served_model VARCHAR;
