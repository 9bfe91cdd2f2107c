-- Email addresses receive alert email only once their owner has confirmed them with a signed,
-- expiring, single-use link (issue 17, finding 7: unverified addresses made the service a
-- spam and phishing relay). One row per user and address the user's email may go to: the
-- account's address (user.registered) and the one set in the preferences. An address that is
-- no longer used is forgotten, so changing an address means verifying the new one.
CREATE TABLE email_addresses (
    user_id     UUID NOT NULL,
    -- Lower-cased.
    address     TEXT NOT NULL,
    verified_at TIMESTAMPTZ,
    -- The nonce of the one outstanding link: cleared when it is used, replaced when a new
    -- link is sent (so only the latest link works, and only once).
    nonce       TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, address)
);

-- Verification links sent, for the per-address and per-user rate limits (rows older than the
-- window are deleted as new ones are written).
CREATE TABLE email_verification_sends (
    user_id UUID NOT NULL,
    address TEXT NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX email_verification_sends_by_user ON email_verification_sends (user_id, sent_at);
