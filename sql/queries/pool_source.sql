-- Where a pool was read from (a file, or builtin:easy-vqa).
SELECT source FROM pools WHERE pool_id = $pool_id;
