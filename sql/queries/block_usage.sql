-- The store file's block size and how many of its blocks are in use (data, indexes, metadata).
SELECT block_size, used_blocks FROM pragma_database_size() WHERE database_name = current_database()
