-- ACE settings keys: which rollout is teacher-forced and how heads are reduced.
CREATE TABLE IF NOT EXISTS ace_settings (
    ace_key         VARCHAR PRIMARY KEY,
    settings_key    VARCHAR NOT NULL,
    head_reduce     VARCHAR NOT NULL,
    response_choice VARCHAR NOT NULL
);
