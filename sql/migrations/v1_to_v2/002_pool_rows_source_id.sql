-- Schema 1 -> 2: the row's own id in its file (id, extra_info.index), if any.
ALTER TABLE pool_rows ADD COLUMN IF NOT EXISTS source_id VARCHAR;
