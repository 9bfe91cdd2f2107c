-- Data-quality findings, one row per (bar, flag). Bars carry the same findings as a bitmask
-- (`bars.quality_flags`); this table keeps the detail and when it was first seen, for the
-- quality report. Re-ingesting the same data finds the same rows (no duplicates, no new
-- events). A finding whose flag a bar no longer carries (a corrected re-import) stays here as
-- history; the report only lists findings the bar still carries.
CREATE TABLE quality_issues (
    symbol      TEXT NOT NULL REFERENCES symbols (symbol),
    timeframe   SMALLINT NOT NULL,          -- mirai.stock.v1.Timeframe
    bar_start   TIMESTAMPTZ NOT NULL,
    flag        SMALLINT NOT NULL CHECK (flag BETWEEN 1 AND 30), -- mirai.stock.v1.QualityFlag
    detail      TEXT NOT NULL,
    source      TEXT NOT NULL,
    import_id   TEXT NOT NULL DEFAULT '',
    detected_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, bar_start, flag)
);

-- The tracked-symbol set: one row per (symbol, reference); a symbol is tracked while it has
-- at least one. References are `alert:{alert_id}` or `watchlist:{user_id}`.
CREATE TABLE tracking_references (
    symbol     TEXT NOT NULL REFERENCES symbols (symbol),
    reference  TEXT NOT NULL CHECK (reference ~ '^(alert|watchlist):[A-Za-z0-9._:-]{1,100}$'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, reference)
);
CREATE INDEX tracking_references_reference ON tracking_references (reference);

-- Kept in step with tracking_references in the same transaction (which also locks the symbol
-- row, so tracking events of one symbol commit in order).
ALTER TABLE symbols
    ADD COLUMN reference_count INTEGER NOT NULL DEFAULT 0 CHECK (reference_count >= 0),
    ADD COLUMN tracked_since   TIMESTAMPTZ;
CREATE INDEX symbols_tracked ON symbols (symbol) WHERE reference_count > 0;
