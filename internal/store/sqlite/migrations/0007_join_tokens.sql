-- Join tokens, stored hashed, each with its own expiry and revocation; a
-- pool may have several. pools.join_token held a token in the clear: the
-- server hashes any it finds into this table at start and clears it.
CREATE TABLE join_tokens (
    id         TEXT PRIMARY KEY,
    pool_id    TEXT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX join_tokens_pool ON join_tokens (pool_id);
