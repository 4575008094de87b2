-- Schema 1 -> 2: a sample's own system prompt (part of its id when present).
ALTER TABLE samples ADD COLUMN IF NOT EXISTS system VARCHAR;
