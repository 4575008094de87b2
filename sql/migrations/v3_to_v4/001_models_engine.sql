-- Schema 3 -> 4: which engine a model key's rollouts come from (all were transformers').
ALTER TABLE models ADD COLUMN IF NOT EXISTS engine VARCHAR DEFAULT 'transformers';
