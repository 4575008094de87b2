-- Schema 2 -> 3: passed_cde is now 'cde' in passed.
ALTER TABLE decisions DROP COLUMN passed_cde;
