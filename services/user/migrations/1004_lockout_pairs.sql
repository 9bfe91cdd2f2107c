-- Lockouts per (account, client IP) pair: a stranger's wrong guesses lock the stranger's pair,
-- not the owner. Pair keys are `<ip>|<lower-cased email>`. The whole account locks only when
-- its failures come from several client IPs: `ips` holds the distinct IPs of the account's
-- failures in the current window (capped in the code).
ALTER TABLE login_throttle DROP CONSTRAINT login_throttle_scope_check;
ALTER TABLE login_throttle
    ADD CONSTRAINT login_throttle_scope_check CHECK (scope IN ('account', 'ip', 'pair'));
ALTER TABLE login_throttle ADD COLUMN ips TEXT[] NOT NULL DEFAULT '{}';

-- Unlock links emailed to the owner of a locked account: only the SHA-256 of the secret is
-- stored; a link works once, until it expires.
CREATE TABLE unlock_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX unlock_tokens_user ON unlock_tokens (user_id);
