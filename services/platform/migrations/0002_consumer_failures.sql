-- Failed deliveries per subscription and Pub/Sub message id: the consumer counts attempts
-- here and, at its limit, moves the message to the subscription's dead-letter topic itself
-- (with the reason), acknowledging it afterwards. Pub/Sub's own dead-letter policy stays as a
-- backstop with a higher limit.
CREATE TABLE consumer_failures (
    subscription    TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT NOT NULL,
    first_failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_failed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    dead_lettered_at TIMESTAMPTZ,
    PRIMARY KEY (subscription, message_id)
);
CREATE INDEX consumer_failures_last_failed ON consumer_failures (last_failed_at);
