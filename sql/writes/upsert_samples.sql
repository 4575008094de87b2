-- Add samples from the registered frame 'incoming'; ids are content hashes, so a known id keeps its first record.
INSERT INTO samples BY NAME SELECT * FROM incoming ON CONFLICT DO NOTHING;
