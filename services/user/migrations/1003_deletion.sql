-- The account-deletion saga: one row per requested deletion, one per participant it waits
-- for. Rows stay after completion (the account itself is reduced to a tombstone) so progress
-- remains queryable and a repeated request is answered with the finished saga.
CREATE TABLE deletion_sagas (
    user_id        UUID PRIMARY KEY REFERENCES users (user_id),
    correlation_id UUID NOT NULL,
    requested_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at   TIMESTAMPTZ
);

CREATE TABLE deletion_participants (
    user_id           UUID NOT NULL REFERENCES deletion_sagas (user_id),
    participant       TEXT NOT NULL,
    position          SMALLINT NOT NULL,        -- configuration order, for display
    purged_at         TIMESTAMPTZ,
    items_purged      BIGINT NOT NULL DEFAULT 0,
    reminders_sent    INTEGER NOT NULL DEFAULT 0,
    last_requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, participant)
);
-- The reminder sweep looks only at outstanding participants.
CREATE INDEX deletion_participants_outstanding
    ON deletion_participants (last_requested_at) WHERE purged_at IS NULL;
