-- Before a pool's groups under the keys just read are written: its earlier values of those keys
-- (a value since removed from the file must not stay).
DELETE FROM pool_groups WHERE pool_id = $pool_id AND list_contains($keys, group_key);
