-- Record one fact about the store.
INSERT OR REPLACE INTO meta VALUES ($key, $value);
