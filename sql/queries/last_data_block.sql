-- The highest block a table's data lives in (NULL while it has none on disk).
SELECT max(block_id) AS last_block FROM pragma_storage_info($table_name) WHERE block_id >= 0
