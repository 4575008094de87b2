-- Insert or replace rows of attention_stats from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO attention_stats BY NAME SELECT * FROM incoming;
