-- Insert or replace rows of rollout_settings from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO rollout_settings BY NAME SELECT * FROM incoming;
