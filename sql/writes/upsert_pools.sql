-- Insert or replace rows of pools from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO pools BY NAME SELECT * FROM incoming;
