-- Schema 2 -> 3: passed_ace is now 'ace' in passed.
ALTER TABLE decisions DROP COLUMN passed_ace;
