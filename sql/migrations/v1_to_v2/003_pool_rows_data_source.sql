-- Schema 1 -> 2: verl's data_source of the row, if any.
ALTER TABLE pool_rows ADD COLUMN IF NOT EXISTS data_source VARCHAR;
