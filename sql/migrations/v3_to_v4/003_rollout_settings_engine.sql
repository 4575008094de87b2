-- Schema 3 -> 4: the engine kind is part of a rollout settings key (all were transformers').
ALTER TABLE rollout_settings ADD COLUMN IF NOT EXISTS engine VARCHAR DEFAULT 'transformers';
