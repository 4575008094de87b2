-- Insert or replace rows of inference_errors from the registered frame 'incoming' (idempotent per key).
INSERT OR REPLACE INTO inference_errors BY NAME SELECT * FROM incoming;
