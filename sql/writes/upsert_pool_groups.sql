-- Insert or replace rows of pool_groups from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO pool_groups BY NAME SELECT * FROM incoming;
