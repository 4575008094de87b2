-- Insert or replace rows of samples from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO samples BY NAME SELECT * FROM incoming;
