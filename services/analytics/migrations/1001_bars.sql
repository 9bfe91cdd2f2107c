-- The analytics read model of bars, fed by stock.bar.closed and back-filled from stock-data's
-- GetBars. Never read from stock-data's database.
--
-- One row per (symbol, timeframe, start): a late bar inserts in place (queries order by
-- start_at), a duplicate finds identical values and changes nothing, a revised bar replaces the
-- values. `as_of` is when the information was current (the event's ce-time, or the moment a
-- backfill read stock-data): a row is only replaced by information at least as new, so an old
-- revision delivered late cannot undo a newer one.
CREATE TABLE bars (
    symbol      TEXT NOT NULL,
    timeframe   INTEGER NOT NULL, -- mirai.stock.v1.Timeframe
    start_at    TIMESTAMPTZ NOT NULL,
    end_at      TIMESTAMPTZ,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION NOT NULL,
    vwap        DOUBLE PRECISION,
    trade_count BIGINT,
    adjustment  INTEGER NOT NULL, -- mirai.stock.v1.Adjustment
    source      TEXT NOT NULL,
    as_of       TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, start_at)
);
