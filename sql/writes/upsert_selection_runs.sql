-- Insert or replace rows of selection_runs from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO selection_runs BY NAME SELECT * FROM incoming;
