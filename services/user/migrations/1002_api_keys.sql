-- Personal API keys: only the SHA-256 of the secret is stored.
CREATE TABLE api_keys (
    api_key_id    UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name          TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    prefix        TEXT NOT NULL,
    secret_hash   BYTEA NOT NULL UNIQUE,
    scopes        TEXT[] NOT NULL CHECK (scopes <@ ARRAY['user', 'premium', 'admin']),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at  TIMESTAMPTZ,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (user_id, name) WHERE revoked_at IS NULL;
CREATE INDEX api_keys_user ON api_keys (user_id, api_key_id DESC);
