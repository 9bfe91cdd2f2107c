//! Symbols: typed values, validation and storage.
//!
//! Listing, changing and delisting a symbol writes the row and its event to the outbox in one
//! transaction, so consumers see exactly the committed changes.

use chrono::{DateTime, Utc};
use mirai_platform::error::invalid_argument;
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgPool, Postgres, Transaction};

use crate::SERVICE;

/// A ticker: 1–10 of `A–Z 0–9 . -`, starting with a letter or digit, stored upper-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticker(String);

impl Ticker {
    pub fn parse(raw: &str) -> Result<Self, tonic::Status> {
        match mirai_platform::wire::ticker(raw) {
            Some(ticker) => Ok(Self(ticker)),
            None => Err(invalid_argument(
                "symbol",
                format!(
                    "`{raw}` is not a ticker ({})",
                    mirai_platform::wire::TICKER_RULE
                ),
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The stored form of [`pb::AssetType`].
fn asset_type_name(asset_type: pb::AssetType) -> Option<&'static str> {
    Some(match asset_type {
        pb::AssetType::Unspecified => return None,
        pb::AssetType::Equity => "equity",
        pb::AssetType::Etf => "etf",
        pb::AssetType::Index => "index",
        pb::AssetType::Crypto => "crypto",
        pb::AssetType::Fx => "fx",
    })
}

fn asset_type_of(name: &str) -> pb::AssetType {
    match name {
        "equity" => pb::AssetType::Equity,
        "etf" => pb::AssetType::Etf,
        "index" => pb::AssetType::Index,
        "crypto" => pb::AssetType::Crypto,
        "fx" => pb::AssetType::Fx,
        _ => pb::AssetType::Unspecified,
    }
}

/// A validated symbol to list.
#[derive(Debug, Clone)]
pub struct NewSymbol {
    pub ticker: Ticker,
    pub name: String,
    pub exchange_mic: String,
    pub currency: String,
    pub asset_type: &'static str,
}

impl NewSymbol {
    /// Validates the caller's fields; output-only fields are ignored.
    pub fn parse(symbol: &pb::Symbol) -> Result<Self, tonic::Status> {
        let name = symbol.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(invalid_argument("symbol.name", "must be 1-200 characters"));
        }
        let exchange_mic = symbol.exchange_mic.trim().to_ascii_uppercase();
        if exchange_mic.len() != 4 || !exchange_mic.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid_argument(
                "symbol.exchange_mic",
                format!(
                    "`{}` is not an ISO 10383 MIC (4 letters or digits, e.g. XNAS)",
                    symbol.exchange_mic
                ),
            ));
        }
        let currency = symbol.currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid_argument(
                "symbol.currency",
                format!(
                    "`{}` is not an ISO 4217 code (3 letters, e.g. USD)",
                    symbol.currency
                ),
            ));
        }
        let asset_type = pb::AssetType::try_from(symbol.asset_type)
            .ok()
            .and_then(asset_type_name)
            .ok_or_else(|| {
                invalid_argument(
                    "symbol.asset_type",
                    "required: one of EQUITY, ETF, INDEX, CRYPTO, FX",
                )
            })?;
        Ok(Self {
            ticker: Ticker::parse(&symbol.symbol)?,
            name: name.to_owned(),
            exchange_mic,
            currency,
            asset_type,
        })
    }
}

/// A stored symbol.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SymbolRow {
    pub symbol: String,
    pub name: String,
    pub exchange_mic: String,
    pub currency: String,
    pub asset_type: String,
    pub status: String,
    pub listed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub delisted_at: Option<DateTime<Utc>>,
    pub delisting_reason: String,
    /// Tracking references held (alerts, watchlists).
    pub reference_count: i32,
    pub tracked_since: Option<DateTime<Utc>>,
}

impl SymbolRow {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

impl From<SymbolRow> for pb::Symbol {
    fn from(row: SymbolRow) -> Self {
        Self {
            asset_type: asset_type_of(&row.asset_type).into(),
            status: match row.status.as_str() {
                "active" => pb::SymbolStatus::Active,
                _ => pb::SymbolStatus::Delisted,
            }
            .into(),
            listed_at: Some(wire::timestamp(row.listed_at)),
            updated_at: Some(wire::timestamp(row.updated_at)),
            delisted_at: row.delisted_at.map(wire::timestamp),
            symbol: row.symbol,
            name: row.name,
            exchange_mic: row.exchange_mic,
            currency: row.currency,
            delisting_reason: row.delisting_reason,
            tracked: row.reference_count > 0,
            tracking_references: row.reference_count.max(0) as u32,
        }
    }
}

const COLUMNS: &str = "symbol, name, exchange_mic, currency, asset_type, status, listed_at, \
                       updated_at, delisted_at, delisting_reason, reference_count, tracked_since";

/// Lists `new` (or re-lists a delisted ticker) and enqueues `symbol.listed`, in one transaction.
/// `Ok(None)` when the ticker is already active.
pub async fn list(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewSymbol,
) -> Result<Option<SymbolRow>, sqlx::Error> {
    let row: Option<SymbolRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO symbols (symbol, name, exchange_mic, currency, asset_type)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (symbol) DO UPDATE
            SET name = EXCLUDED.name, exchange_mic = EXCLUDED.exchange_mic,
                currency = EXCLUDED.currency, asset_type = EXCLUDED.asset_type,
                status = 'active', listed_at = now(), updated_at = now(),
                delisted_at = NULL, delisting_reason = ''
            WHERE symbols.status = 'delisted'
         RETURNING {COLUMNS}"
    )))
    .bind(new.ticker.as_str())
    .bind(&new.name)
    .bind(&new.exchange_mic)
    .bind(&new.currency)
    .bind(new.asset_type)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = &row {
        let event = ev::SymbolListed {
            symbol: row.symbol.clone(),
            name: row.name.clone(),
            exchange_mic: row.exchange_mic.clone(),
            currency: row.currency.clone(),
            asset_type: asset_type_of(&row.asset_type).into(),
        };
        outbox::enqueue(tx, SERVICE, &event, None).await?;
    }
    Ok(row)
}

/// Delists `ticker` and enqueues `symbol.delisted`. Idempotent: an already delisted symbol is
/// returned unchanged without a new event. `Ok(None)` for an unknown ticker.
pub async fn delist(
    tx: &mut Transaction<'_, Postgres>,
    ticker: &Ticker,
    reason: &str,
) -> Result<Option<SymbolRow>, sqlx::Error> {
    let changed: Option<SymbolRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE symbols SET status = 'delisted', delisted_at = now(), updated_at = now(),
                delisting_reason = $2
         WHERE symbol = $1 AND status = 'active'
         RETURNING {COLUMNS}"
    )))
    .bind(ticker.as_str())
    .bind(reason)
    .fetch_optional(&mut **tx)
    .await?;
    match changed {
        Some(row) => {
            let event = ev::SymbolDelisted {
                symbol: row.symbol.clone(),
                reason: row.delisting_reason.clone(),
            };
            outbox::enqueue(tx, SERVICE, &event, None).await?;
            Ok(Some(row))
        }
        None => get(&mut **tx, ticker).await,
    }
}

/// The fields `UpdateSymbol` may change.
const UPDATABLE: [&str; 4] = ["name", "exchange_mic", "currency", "asset_type"];

/// Applies the fields of `update` named in `mask` to the stored symbol and enqueues
/// `symbol.updated` (with the full metadata after the change), in the caller's transaction.
/// Unknown paths are INVALID_ARGUMENT; the merged values are validated like a new listing.
/// A mask that changes nothing returns the row unchanged, without an event. `Ok(None)` for an
/// unknown ticker.
pub async fn update(
    tx: &mut Transaction<'_, Postgres>,
    update: &pb::Symbol,
    mask: &[String],
) -> Result<Option<SymbolRow>, tonic::Status> {
    let status = |e| mirai_platform::db::status(e, "symbol");
    let ticker = Ticker::parse(&update.symbol)?;
    for path in mask {
        if !UPDATABLE.contains(&path.as_str()) {
            return Err(invalid_argument(
                "update_mask",
                format!(
                    "`{path}` cannot be changed (one of {})",
                    UPDATABLE.join(", ")
                ),
            ));
        }
    }
    let current: Option<SymbolRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM symbols WHERE symbol = $1 FOR UPDATE"
    )))
    .bind(ticker.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(status)?;
    let Some(current) = current else {
        return Ok(None);
    };
    let mut merged: pb::Symbol = current.clone().into();
    for path in mask {
        match path.as_str() {
            "name" => merged.name = update.name.clone(),
            "exchange_mic" => merged.exchange_mic = update.exchange_mic.clone(),
            "currency" => merged.currency = update.currency.clone(),
            _ => merged.asset_type = update.asset_type,
        }
    }
    let new = NewSymbol::parse(&merged).map_err(|e| {
        // Name the field as the caller sent it (`symbol.name` → the masked `name`).
        tonic::Status::invalid_argument(e.message().trim_start_matches("symbol.").to_owned())
    })?;
    if (
        new.name.as_str(),
        new.exchange_mic.as_str(),
        new.currency.as_str(),
        new.asset_type,
    ) == (
        current.name.as_str(),
        current.exchange_mic.as_str(),
        current.currency.as_str(),
        current.asset_type.as_str(),
    ) {
        return Ok(Some(current));
    }
    let row: SymbolRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE symbols SET name = $2, exchange_mic = $3, currency = $4, asset_type = $5,
                updated_at = now()
         WHERE symbol = $1 RETURNING {COLUMNS}"
    )))
    .bind(ticker.as_str())
    .bind(&new.name)
    .bind(&new.exchange_mic)
    .bind(&new.currency)
    .bind(new.asset_type)
    .fetch_one(&mut **tx)
    .await
    .map_err(status)?;
    let event = ev::SymbolUpdated {
        symbol: row.symbol.clone(),
        name: row.name.clone(),
        exchange_mic: row.exchange_mic.clone(),
        currency: row.currency.clone(),
        asset_type: asset_type_of(&row.asset_type).into(),
    };
    outbox::enqueue(tx, SERVICE, &event, None)
        .await
        .map_err(status)?;
    Ok(Some(row))
}

/// One symbol by ticker.
pub async fn get<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    ticker: &Ticker,
) -> Result<Option<SymbolRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM symbols WHERE symbol = $1"
    )))
    .bind(ticker.as_str())
    .fetch_optional(executor)
    .await
}

/// Search filters (already validated).
#[derive(Debug, Default)]
pub struct Search {
    /// Upper-cased query; empty lists everything.
    pub query: String,
    pub asset_type: Option<&'static str>,
    pub exchange_mic: Option<String>,
    pub include_delisted: bool,
    pub tracked_only: bool,
    /// Keyset: tickers after this one (only for the unranked listing).
    pub after: String,
    pub limit: u32,
}

impl Search {
    pub fn parse(request: &pb::SearchSymbolsRequest) -> Result<Self, tonic::Status> {
        let asset_type = match pb::AssetType::try_from(request.asset_type) {
            Ok(pb::AssetType::Unspecified) => None,
            Ok(other) => asset_type_name(other),
            Err(_) => {
                return Err(invalid_argument("asset_type", "unknown asset type"));
            }
        };
        let query = request.query.trim().to_ascii_uppercase();
        if query.chars().count() > 100 {
            return Err(invalid_argument("query", "at most 100 characters"));
        }
        Ok(Self {
            query,
            asset_type,
            exchange_mic: Some(request.exchange_mic.trim().to_ascii_uppercase())
                .filter(|mic| !mic.is_empty()),
            include_delisted: request.include_delisted,
            tracked_only: request.tracked_only,
            after: wire::page_after(&request.page_token)?,
            limit: wire::page_size(request.page_size, 20, 100)?,
        })
    }
}

/// Symbols matching `search`, best first: exact ticker, ticker prefix, then name matches; by
/// ticker within each rank. Returns one row more than the limit when another page exists.
pub async fn search(pool: &PgPool, search: &Search) -> Result<Vec<SymbolRow>, sqlx::Error> {
    // Rank, then ticker, is a total order; the keyset is (rank, ticker) encoded as "rank:ticker".
    let (after_rank, after_ticker) = search
        .after
        .split_once(':')
        .and_then(|(rank, ticker)| Some((rank.parse::<i32>().ok()?, ticker.to_owned())))
        .unwrap_or((-1, String::new()));
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM (
            SELECT *, CASE
                WHEN $1 = '' THEN 0
                WHEN symbol = $1 THEN 0
                WHEN symbol LIKE $9 || '%' THEN 1
                ELSE 2 END AS rank
            FROM symbols
            WHERE ($1 = '' OR symbol LIKE $9 || '%'
                   OR lower(name) LIKE '%' || lower($9) || '%')
              AND ($2::text IS NULL OR asset_type = $2)
              AND ($3::text IS NULL OR exchange_mic = $3)
              AND ($4 OR status = 'active')
              AND (NOT $8 OR reference_count > 0)
         ) ranked
         WHERE (rank, symbol) > ($5, $6)
         ORDER BY rank, symbol
         LIMIT $7"
    )))
    .bind(&search.query)
    .bind(search.asset_type)
    .bind(&search.exchange_mic)
    .bind(search.include_delisted)
    .bind(after_rank)
    .bind(after_ticker)
    .bind(i64::from(search.limit) + 1)
    .bind(search.tracked_only)
    // The query as a LIKE pattern: `%` and `_` typed by the user match themselves.
    .bind(mirai_platform::db::like_escape(&search.query))
    .fetch_all(pool)
    .await
}

/// The rank [`search`] gave `row`, to build the next page's token.
pub fn search_key(query: &str, row: &SymbolRow) -> String {
    let rank = if query.is_empty() || row.symbol == query {
        0
    } else if row.symbol.starts_with(query) {
        1
    } else {
        2
    };
    format!("{rank}:{}", row.symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickers_are_normalised_and_checked() {
        assert_eq!(Ticker::parse(" brk.b ").unwrap().as_str(), "BRK.B");
        for bad in ["", "-AB", "TOOLONGTICKER", "A B", "ÄPPLE", "A/B"] {
            let err = Ticker::parse(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(err.message().starts_with("symbol:"), "{}", err.message());
        }
    }

    #[test]
    fn new_symbols_are_validated_field_by_field() {
        let good = pb::Symbol {
            symbol: "aapl".into(),
            name: " Apple Inc. ".into(),
            exchange_mic: "xnas".into(),
            currency: "usd".into(),
            asset_type: pb::AssetType::Equity.into(),
            ..Default::default()
        };
        let parsed = NewSymbol::parse(&good).unwrap();
        assert_eq!(
            (
                parsed.ticker.as_str(),
                parsed.name.as_str(),
                parsed.exchange_mic.as_str(),
                parsed.currency.as_str(),
                parsed.asset_type
            ),
            ("AAPL", "Apple Inc.", "XNAS", "USD", "equity")
        );
        type Breaker = fn(&mut pb::Symbol);
        let cases: [(Breaker, &str); 4] = [
            (|s| s.name = " ".into(), "symbol.name:"),
            (|s| s.exchange_mic = "NASDAQ".into(), "symbol.exchange_mic:"),
            (|s| s.currency = "US$".into(), "symbol.currency:"),
            (|s| s.asset_type = 0, "symbol.asset_type:"),
        ];
        for (break_it, field) in cases {
            let mut bad = good.clone();
            break_it(&mut bad);
            let err = NewSymbol::parse(&bad).unwrap_err();
            assert!(err.message().starts_with(field), "{}", err.message());
        }
    }
}
