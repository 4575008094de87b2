-- Insert or replace rows of rollouts from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO rollouts BY NAME SELECT * FROM incoming;
