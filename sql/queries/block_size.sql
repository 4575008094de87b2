-- The size of the store file's blocks.
SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()
