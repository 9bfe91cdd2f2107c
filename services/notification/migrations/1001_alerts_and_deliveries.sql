-- Alerts, notifications, deliveries, endpoints, devices, preferences, and the read models they
-- need (users, latest forecasts and prices). Nothing here is read by another service.

-- The users this service has heard of (user.registered, user.role.changed): the address for
-- email, the time zone for quiet hours, the roles for limits and admin notifications. Never
-- read from the user service's database.
CREATE TABLE users (
    user_id      UUID PRIMARY KEY,
    email        TEXT NOT NULL DEFAULT '',
    display_name TEXT NOT NULL DEFAULT '',
    time_zone    TEXT NOT NULL DEFAULT 'UTC',
    locale       TEXT NOT NULL DEFAULT 'en',
    roles        TEXT[] NOT NULL DEFAULT '{}',
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX users_admins ON users USING gin (roles);

CREATE TABLE alerts (
    alert_id             UUID PRIMARY KEY,
    user_id              UUID NOT NULL,
    symbol               TEXT NOT NULL,
    name                 TEXT NOT NULL DEFAULT '',
    -- The validated mirai.notification.v1.Condition, protobuf-encoded.
    condition            BYTEA NOT NULL,
    frequency            SMALLINT NOT NULL,
    bar_timeframe        SMALLINT NOT NULL,
    cooldown_secs        BIGINT NOT NULL,
    expires_at           TIMESTAMPTZ,
    message_template     TEXT NOT NULL DEFAULT '',
    channels             SMALLINT[] NOT NULL,
    webhook_endpoint_ids UUID[] NOT NULL DEFAULT '{}',
    enabled              BOOLEAN NOT NULL DEFAULT true,
    -- PENDING, ACTIVE, TRIGGERED, REJECTED, EXPIRED, DISABLED.
    status               TEXT NOT NULL,
    status_reason        TEXT NOT NULL DEFAULT '',
    -- Evaluation state (see domain::condition): changed only together with the inbox row of
    -- the event that changed it, and guarded by state_version against concurrent evaluators.
    armed_up             BOOLEAN NOT NULL DEFAULT false,
    armed_down           BOOLEAN NOT NULL DEFAULT false,
    move_ref_at          TIMESTAMPTZ,
    last_fired_bar       TIMESTAMPTZ,
    trigger_count        INTEGER NOT NULL DEFAULT 0,
    last_triggered_at    TIMESTAMPTZ,
    state_version        BIGINT NOT NULL DEFAULT 0,
    -- Bumped whenever the rule (condition, frequency, template, channels) changes, so the
    -- evaluators' in-memory index knows to reload it.
    rule_version         INTEGER NOT NULL DEFAULT 0,
    -- Alert-activation saga: requests sent so far, and when to ask again (PENDING only).
    saga_attempt         INTEGER NOT NULL DEFAULT 0,
    saga_next_at         TIMESTAMPTZ,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    activated_at         TIMESTAMPTZ
);
CREATE INDEX alerts_by_user ON alerts (user_id, alert_id DESC);
CREATE INDEX alerts_active_by_symbol ON alerts (symbol) WHERE status = 'ACTIVE';
CREATE INDEX alerts_saga_due ON alerts (saga_next_at) WHERE status = 'PENDING';
CREATE INDEX alerts_expiring ON alerts (expires_at)
    WHERE expires_at IS NOT NULL AND status IN ('PENDING', 'ACTIVE', 'DISABLED');

-- Wakes every replica's evaluation index when an alert's rule or status changes (delivered at
-- commit only). State-only updates (arming, counts) do not notify.
CREATE FUNCTION alerts_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('mirai_alerts', OLD.alert_id::text);
    ELSE
        PERFORM pg_notify('mirai_alerts', NEW.alert_id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER alerts_notify_insert_delete AFTER INSERT OR DELETE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_notify();
CREATE TRIGGER alerts_notify_update AFTER UPDATE OF status, rule_version ON alerts
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.rule_version IS DISTINCT FROM NEW.rule_version)
    EXECUTE FUNCTION alerts_notify();

-- Stored notifications (the in-app channel, and the record every delivery points to).
CREATE TABLE notifications (
    notification_id UUID PRIMARY KEY,
    user_id         UUID NOT NULL,
    category        SMALLINT NOT NULL,
    critical        BOOLEAN NOT NULL DEFAULT false,
    title           TEXT NOT NULL,
    body            TEXT NOT NULL,
    data            JSONB NOT NULL DEFAULT '{}',
    alert_id        UUID,
    symbol          TEXT NOT NULL DEFAULT '',
    -- False when the user's preferences turn in-app off for the category: the notification
    -- exists for the other channels' deliveries but is not listed or streamed.
    in_app          BOOLEAN NOT NULL DEFAULT true,
    read_at         TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- What made it, e.g. "trigger:<alert>:<cause event id>": a duplicated or redelivered
    -- cause cannot create a second notification (and so no second delivery per channel).
    dedupe_key      TEXT UNIQUE
);
CREATE INDEX notifications_by_user ON notifications (user_id, notification_id DESC) WHERE in_app;
CREATE INDEX notifications_unread ON notifications (user_id) WHERE in_app AND read_at IS NULL;

CREATE FUNCTION notifications_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.in_app THEN
        PERFORM pg_notify('mirai_notifications', NEW.user_id::text || ' ' || NEW.notification_id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION notifications_notify();

CREATE TABLE webhook_endpoints (
    webhook_endpoint_id        UUID PRIMARY KEY,
    user_id                    UUID NOT NULL,
    url                        TEXT NOT NULL,
    description                TEXT NOT NULL DEFAULT '',
    categories                 SMALLINT[] NOT NULL DEFAULT '{}',
    -- ENABLED, DISABLED (by the user), DISABLED_FAILING (by the service).
    status                     TEXT NOT NULL DEFAULT 'ENABLED',
    disabled_reason            TEXT NOT NULL DEFAULT '',
    failing_since              TIMESTAMPTZ,
    last_error                 TEXT NOT NULL DEFAULT '',
    -- Signing secrets ("whsec_" + base64). They must be usable for HMAC, so they are stored,
    -- not hashed; the database is the service's own and encrypted at rest on Cloud SQL.
    secret                     TEXT NOT NULL,
    previous_secret            TEXT,
    previous_secret_expires_at TIMESTAMPTZ,
    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_by_user ON webhook_endpoints (user_id, created_at);

CREATE TABLE push_devices (
    push_device_id    UUID PRIMARY KEY,
    user_id           UUID NOT NULL,
    token             TEXT NOT NULL UNIQUE,
    platform          SMALLINT NOT NULL,
    name              TEXT NOT NULL DEFAULT '',
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_delivered_at TIMESTAMPTZ
);
CREATE INDEX push_devices_by_user ON push_devices (user_id, created_at);

-- Delivery preferences: the validated mirai.notification.v1.Preferences, protobuf-encoded
-- (read and written whole; nothing queries inside it).
CREATE TABLE preferences (
    user_id     UUID PRIMARY KEY,
    preferences BYTEA NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One notification to one target on one channel.
CREATE TABLE deliveries (
    delivery_id     UUID PRIMARY KEY,
    user_id         UUID NOT NULL,
    notification_id UUID NOT NULL REFERENCES notifications ON DELETE CASCADE,
    channel         SMALLINT NOT NULL,
    -- Webhook endpoint id, email address or push device id; '' for in-app.
    target          TEXT NOT NULL DEFAULT '',
    -- QUEUED, SENT, DELIVERED, RETRYING, FAILED, DEFERRED, SUPPRESSED.
    status          TEXT NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- Held for the user's digest: sent bundled with the others due at the same time.
    digest          BOOLEAN NOT NULL DEFAULT false,
    last_error      TEXT NOT NULL DEFAULT '',
    resend_of       UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Exactly one original delivery per notification, channel and target.
CREATE UNIQUE INDEX deliveries_once ON deliveries (notification_id, channel, target)
    WHERE resend_of IS NULL;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
    WHERE status IN ('QUEUED', 'RETRYING', 'DEFERRED');
CREATE INDEX deliveries_by_user ON deliveries (user_id, delivery_id DESC);

CREATE FUNCTION deliveries_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mirai_deliveries', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION deliveries_notify();

-- Every attempt of every delivery.
CREATE TABLE delivery_attempts (
    delivery_id   UUID NOT NULL REFERENCES deliveries ON DELETE CASCADE,
    attempt       INTEGER NOT NULL,
    outcome       SMALLINT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    duration_ms   BIGINT NOT NULL,
    response_code INTEGER NOT NULL DEFAULT 0,
    error         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (delivery_id, attempt)
);

-- Market inputs of the evaluation: the latest price, the champion forecast and the latest bar
-- close per timeframe of each symbol, and low/high buckets for moving-window conditions
-- (minutes for two days, days for a year).
CREATE TABLE last_prices (
    symbol   TEXT PRIMARY KEY,
    price    DOUBLE PRECISION NOT NULL,
    price_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE forecasts (
    symbol    TEXT NOT NULL,
    timeframe SMALLINT NOT NULL,
    -- mirai.prediction.v1.Forecast of the champion, protobuf-encoded.
    forecast  BYTEA NOT NULL,
    as_of     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);
CREATE TABLE bar_closes (
    symbol    TEXT NOT NULL,
    timeframe SMALLINT NOT NULL,
    close     DOUBLE PRECISION NOT NULL,
    bar_start TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (symbol, timeframe)
);
CREATE TABLE price_minutes (
    symbol TEXT NOT NULL,
    minute TIMESTAMPTZ NOT NULL,
    low    DOUBLE PRECISION NOT NULL,
    high   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (symbol, minute)
);
CREATE TABLE price_days (
    symbol TEXT NOT NULL,
    day    DATE NOT NULL,
    low    DOUBLE PRECISION NOT NULL,
    high   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (symbol, day)
);
