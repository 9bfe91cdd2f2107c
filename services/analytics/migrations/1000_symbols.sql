-- The analytics read model of symbols, fed by symbol.listed / .updated / .delisted. Never
-- read from stock-data's database.
CREATE TABLE symbols (
    symbol       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    exchange_mic TEXT NOT NULL,
    currency     TEXT NOT NULL,
    asset_type   INTEGER NOT NULL, -- mirai.stock.v1.AssetType
    delisted     BOOLEAN NOT NULL DEFAULT false,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
