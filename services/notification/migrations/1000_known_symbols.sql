-- The symbols this service has heard of (symbol.listed / .updated / .delisted): alerts may only
-- be created on known, active symbols.
CREATE TABLE known_symbols (
    symbol       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    exchange_mic TEXT NOT NULL,
    delisted     BOOLEAN NOT NULL DEFAULT false,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
