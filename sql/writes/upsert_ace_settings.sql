-- Insert or replace rows of ace_settings from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO ace_settings BY NAME SELECT * FROM incoming;
