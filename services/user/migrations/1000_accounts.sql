-- Accounts. Roles are a small set (user, premium, admin) kept as an array; `user` is always
-- present. The password hash is a PHC string carrying its own Argon2 parameters.
CREATE TABLE users (
    user_id        UUID PRIMARY KEY,
    email          TEXT NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash  TEXT,
    display_name   TEXT NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 100),
    time_zone      TEXT NOT NULL DEFAULT 'UTC',
    locale         TEXT NOT NULL DEFAULT 'en-US',
    watchlist      TEXT[] NOT NULL DEFAULT '{}' CHECK (cardinality(watchlist) <= 200),
    roles          TEXT[] NOT NULL DEFAULT '{user}'
                   CHECK ('user' = ANY (roles) AND roles <@ ARRAY['user', 'premium', 'admin']),
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleting', 'deleted')),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at  TIMESTAMPTZ
);

-- One account per address, whatever the case of its local part (mail providers treat
-- "Alice@x" and "alice@x" alike; two accounts for them invite impersonation).
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
CREATE INDEX users_display_name_lower ON users (lower(display_name) text_pattern_ops);

-- A refresh-token family is one session: created at login, rotated by Refresh, revoked as a
-- whole by logout, password change or reuse of a spent token.
CREATE TABLE refresh_families (
    family_id     UUID PRIMARY KEY,
    user_id       UUID NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,           -- absolute lifetime
    revoked_at    TIMESTAMPTZ,
    revoke_reason TEXT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id) WHERE revoked_at IS NULL;

-- Refresh tokens, stored only as SHA-256 hashes. A spent token keeps its row (used_at set) so
-- that presenting it again is recognised as reuse.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    family_id   UUID NOT NULL REFERENCES refresh_families (family_id) ON DELETE CASCADE,
    issued_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,             -- idle lifetime
    used_at     TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

-- Brute-force counters, per account (keyed by lower-cased email, so unknown emails are
-- throttled exactly like known ones) and per client IP.
CREATE TABLE login_throttle (
    scope         TEXT NOT NULL CHECK (scope IN ('account', 'ip')),
    key           TEXT NOT NULL,
    failures      INTEGER NOT NULL DEFAULT 0,
    window_start  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lockouts      INTEGER NOT NULL DEFAULT 0,     -- lockouts so far: each one doubles the next
    locked_until  TIMESTAMPTZ,
    PRIMARY KEY (scope, key)
);
