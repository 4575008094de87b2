-- Schema 2 -> 3: the filters a row passed, as a list (one column per stage before).
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS passed VARCHAR[];
