-- The model registry's persistent part, the traffic configuration, every stored prediction,
-- the scored forecasts behind the scoreboards, and the champion's health.

-- Versions ever seen in registry.json. Serving state (LOADING/READY/FAILED) is per replica and
-- lives in memory; what must survive a restart is here: when a version was first seen, when it
-- last became ready, and retirement (a retired version never serves again).
CREATE TABLE model_versions (
    model_name    text        NOT NULL,
    model_version text        NOT NULL,
    sha256        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    loaded_at     timestamptz,
    retired_at    timestamptz,
    retired_by    text,
    retire_reason text,
    PRIMARY KEY (model_name, model_version)
);

-- The one traffic configuration (splits, shadows, champion) as JSON, with a revision that
-- replicas poll to pick up changes made through another replica.
CREATE TABLE traffic (
    id         smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    revision   bigint      NOT NULL,
    config     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL
);

-- Every change of the traffic configuration, for the record.
CREATE TABLE traffic_changes (
    revision   bigint      PRIMARY KEY,
    config     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text        NOT NULL,
    reason     text        NOT NULL DEFAULT ''
);

-- Every prediction made: served to a caller (origin 'request'), mirrored to a shadow version
-- ('shadow'), or produced by the bar loop ('event'). Quantiles are stored as log returns of
-- the close (`log_returns`, one per level in `levels`), the unit they are scored in; prices
-- are derived and stored as served. The outcome columns are set once the next bar arrives
-- (`scored_at`), or `expired_at` when a later bar arrived first (the next bar was missed).
CREATE TABLE predictions (
    id             uuid             PRIMARY KEY,
    model_name     text             NOT NULL,
    model_version  text             NOT NULL,
    role           smallint         NOT NULL,
    origin         text             NOT NULL CHECK (origin IN ('request', 'shadow', 'event')),
    served         boolean          NOT NULL,
    user_id        uuid,
    symbol         text             NOT NULL,
    timeframe      smallint         NOT NULL,
    adjustment     smallint         NOT NULL,
    as_of          timestamptz      NOT NULL,
    target_start   timestamptz      NOT NULL,
    last_close     double precision NOT NULL,
    levels         double precision[] NOT NULL,
    log_returns    double precision[] NOT NULL,
    lower_level    double precision NOT NULL,
    upper_level    double precision NOT NULL,
    point          double precision NOT NULL,
    lower          double precision NOT NULL,
    upper          double precision NOT NULL,
    p_up           double precision NOT NULL,
    latency_us     bigint           NOT NULL,
    created_at     timestamptz      NOT NULL DEFAULT now(),
    scored_at      timestamptz,
    actual_close   double precision,
    abs_error      double precision,
    naive_abs_error double precision,
    pinball_loss   double precision,
    inside_interval boolean,
    direction_hit  boolean,
    expired_at     timestamptz
);

-- Maturing: the unscored predictions of a symbol at an origin bar.
CREATE INDEX predictions_pending ON predictions (symbol, as_of)
    WHERE scored_at IS NULL AND expired_at IS NULL;
-- History, newest first (ids are UUIDv7, so id order is creation order).
CREATE INDEX predictions_by_symbol ON predictions (symbol, id DESC);
CREATE INDEX predictions_by_user ON predictions (user_id, id DESC) WHERE user_id IS NOT NULL;
CREATE INDEX predictions_by_version ON predictions (model_name, model_version, id DESC);
-- Retention.
CREATE INDEX predictions_created ON predictions (created_at);

-- One scored forecast per version, symbol and origin bar: what the scoreboards aggregate.
-- Forecasts are deterministic in their inputs, so the several stored predictions of one
-- version at one bar (bar loop, requests, shadows) are the same numbers and count once.
CREATE TABLE scores (
    model_name       text             NOT NULL,
    model_version    text             NOT NULL,
    symbol           text             NOT NULL,
    as_of            timestamptz      NOT NULL,
    target_start     timestamptz      NOT NULL,
    median           double precision NOT NULL,
    y                double precision NOT NULL,
    abs_error        double precision NOT NULL,
    naive_abs_error  double precision NOT NULL,
    pinball          double precision NOT NULL,
    baseline_pinball double precision NOT NULL,
    inside           boolean          NOT NULL,
    hit              boolean          NOT NULL,
    nominal_coverage double precision NOT NULL,
    scored_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version, symbol, as_of)
);

CREATE INDEX scores_rolling ON scores (model_name, model_version, target_start DESC, symbol);

-- Whether a version is currently past the degradation thresholds (model.degraded is emitted on
-- the transition, not on every bar), and a challenger's standing promotion proposal.
CREATE TABLE model_health (
    model_name     text        NOT NULL,
    model_version  text        NOT NULL,
    degraded       boolean     NOT NULL DEFAULT false,
    degraded_since timestamptz,
    reason         text        NOT NULL DEFAULT '',
    proposed_at    timestamptz,
    proposal       text        NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, model_version)
);
