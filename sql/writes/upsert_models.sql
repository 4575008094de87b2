-- Insert or replace rows of models from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO models BY NAME SELECT * FROM incoming;
