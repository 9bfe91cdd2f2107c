-- Security audit log. Ids are UUIDv7, so ordering by id is ordering by time and keyset pages
-- stay stable while new entries arrive.
CREATE TABLE audit_events (
    audit_event_id UUID PRIMARY KEY,
    kind           TEXT NOT NULL,
    user_id        UUID,
    actor_user_id  UUID,
    ip             TEXT NOT NULL DEFAULT '',
    user_agent     TEXT NOT NULL DEFAULT '',
    request_id     TEXT NOT NULL DEFAULT '',
    details        JSONB NOT NULL DEFAULT '{}',
    occurred_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_user ON audit_events (user_id, audit_event_id DESC);
CREATE INDEX audit_events_occurred ON audit_events (occurred_at DESC);
