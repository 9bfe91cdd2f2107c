-- Symbols: the instruments the platform knows. A delisted symbol keeps its row (and its bars)
-- and may be listed again.
CREATE TABLE symbols (
    symbol           TEXT PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9][A-Z0-9.\-]{0,9}$'),
    name             TEXT NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    exchange_mic     TEXT NOT NULL CHECK (exchange_mic ~ '^[A-Z0-9]{4}$'),
    currency         TEXT NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    asset_type       TEXT NOT NULL CHECK (asset_type IN ('equity', 'etf', 'index', 'crypto', 'fx')),
    status           TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'delisted')),
    listed_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    delisted_at      TIMESTAMPTZ,
    delisting_reason TEXT NOT NULL DEFAULT ''
);

-- Name search: case-insensitive prefix and substring matches over a few thousand rows.
CREATE INDEX symbols_lower_name ON symbols (lower(name) text_pattern_ops);
