-- A pool is one read of one input (file + row validation outcome).
CREATE TABLE IF NOT EXISTS pools (
    pool_id    VARCHAR PRIMARY KEY,
    source     VARCHAR NOT NULL,
    n_rows     INTEGER NOT NULL,
    n_samples  INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp
);
