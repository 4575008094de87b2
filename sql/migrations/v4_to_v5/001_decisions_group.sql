-- Schema 4 -> 5: the group of each decided row (runs before it have none: '(none)').
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS group_name VARCHAR;
