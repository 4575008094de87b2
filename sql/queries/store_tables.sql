-- The store's own tables (for the check that the file holds every block they point to).
SELECT table_name FROM duckdb_tables()
WHERE database_name = current_database() AND NOT temporary
ORDER BY table_name
