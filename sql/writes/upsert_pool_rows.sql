-- Insert or replace rows of pool_rows from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO pool_rows BY NAME SELECT * FROM incoming;
