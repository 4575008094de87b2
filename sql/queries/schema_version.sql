-- The schema version this store was created with.
SELECT value FROM meta WHERE key = 'schema_version';
