-- Platform tables present in every service database.
-- Versions below 1000 belong to the platform; service migrations start at 1000.

-- Transactional outbox: an event row is written in the same transaction as the state change
-- it describes; the relay publishes committed rows to Pub/Sub and marks them published.
CREATE TABLE outbox (
    -- Insertion order; the relay publishes rows of one ordering key in this order.
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- CloudEvents `ce-id` (UUIDv7): the consumers' dedupe key.
    event_id        UUID        NOT NULL UNIQUE,
    topic           TEXT        NOT NULL,
    -- Pub/Sub ordering key (the aggregate id); '' means unordered.
    ordering_key    TEXT        NOT NULL DEFAULT '',
    -- CloudEvents `ce-type`, e.g. mirai.stock.bar.closed.v1.
    event_type      TEXT        NOT NULL,
    -- Every Pub/Sub attribute of the message (the CloudEvents envelope), as a JSON object.
    attributes      JSONB       NOT NULL,
    payload         BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at    TIMESTAMPTZ,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error      TEXT
);

CREATE INDEX outbox_pending_by_key ON outbox (ordering_key, id) WHERE published_at IS NULL;
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay as soon as a transaction that wrote events commits (NOTIFY is delivered at
-- commit, never for a rolled-back transaction). Polling remains as the fallback.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirai_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Idempotent consumer inbox: one row per (handler, event) inserted in the handler's
-- transaction; a duplicate delivery finds the row and is acknowledged without effect.
CREATE TABLE processed_events (
    handler      TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, event_id)
);

CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
