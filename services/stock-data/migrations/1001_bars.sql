-- OHLCV bars. One row per (symbol, timeframe, start); the primary key's B-tree serves every
-- range scan ("bars of a symbol and timeframe between two instants", both directions). At
-- decades of daily bars (~5,000 rows per symbol) and months of minute bars (~100,000 per symbol)
-- a single table with this key stays well within one index; partitioning (by timeframe, then by
-- time for minute bars) is deferred until measurements ask for it.
CREATE TABLE bars (
    symbol        TEXT NOT NULL REFERENCES symbols (symbol),
    timeframe     SMALLINT NOT NULL,          -- mirai.stock.v1.Timeframe
    start_at      TIMESTAMPTZ NOT NULL,
    end_at        TIMESTAMPTZ NOT NULL CHECK (end_at > start_at),
    open          DOUBLE PRECISION NOT NULL,
    high          DOUBLE PRECISION NOT NULL,
    low           DOUBLE PRECISION NOT NULL,
    close         DOUBLE PRECISION NOT NULL,
    volume        DOUBLE PRECISION NOT NULL,
    vwap          DOUBLE PRECISION,
    trade_count   BIGINT,
    adjustment    SMALLINT NOT NULL,          -- mirai.stock.v1.Adjustment
    source        TEXT NOT NULL,
    quality_flags INTEGER NOT NULL DEFAULT 0, -- bit n set = mirai.stock.v1.QualityFlag n
    ingested_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, timeframe, start_at)
);
