-- Insert or replace rows of decisions from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO decisions BY NAME SELECT * FROM incoming;
