//! Symbols: the rows, listing, delisting, lookup and search.
//!
//! Listing, changing and delisting a symbol writes the row and its event to the outbox in one
//! transaction, so consumers see exactly the committed changes.

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgPool, Postgres, Transaction};

use crate::SERVICE;
use crate::domain::symbol::asset_type_of;
use crate::domain::{NewSymbol, Search, Ticker};

/// A stored symbol: the columns every query of symbols returns.
#[derive(Debug, Clone)]
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

/// Lists `new` (or re-lists a delisted ticker) and enqueues `symbol.listed`, in one transaction.
/// `Ok(None)` when the ticker is already active.
pub async fn list(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewSymbol,
) -> Result<Option<SymbolRow>, sqlx::Error> {
    let row: Option<SymbolRow> = sqlx::query_as!(
        SymbolRow,
        "INSERT INTO symbols (symbol, name, exchange_mic, currency, asset_type)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (symbol) DO UPDATE
            SET name = EXCLUDED.name, exchange_mic = EXCLUDED.exchange_mic,
                currency = EXCLUDED.currency, asset_type = EXCLUDED.asset_type,
                status = 'active', listed_at = now(), updated_at = now(),
                delisted_at = NULL, delisting_reason = ''
            WHERE symbols.status = 'delisted'
         RETURNING symbol, name, exchange_mic, currency, asset_type, status, listed_at,
                updated_at, delisted_at, delisting_reason, reference_count, tracked_since",
        new.ticker.as_str(),
        &new.name,
        &new.exchange_mic,
        &new.currency,
        new.asset_type,
    )
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
    let changed: Option<SymbolRow> = sqlx::query_as!(
        SymbolRow,
        "UPDATE symbols SET status = 'delisted', delisted_at = now(), updated_at = now(),
                delisting_reason = $2
         WHERE symbol = $1 AND status = 'active'
         RETURNING symbol, name, exchange_mic, currency, asset_type, status, listed_at,
                updated_at, delisted_at, delisting_reason, reference_count, tracked_since",
        ticker.as_str(),
        reason,
    )
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

/// `ticker`'s row, locked for the rest of the transaction; `None` for an unknown ticker.
pub async fn lock(
    tx: &mut Transaction<'_, Postgres>,
    ticker: &Ticker,
) -> Result<Option<SymbolRow>, sqlx::Error> {
    sqlx::query_as!(
        SymbolRow,
        "SELECT symbol, name, exchange_mic, currency, asset_type, status, listed_at,
                updated_at, delisted_at, delisting_reason, reference_count, tracked_since
           FROM symbols WHERE symbol = $1 FOR UPDATE",
        ticker.as_str(),
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Writes `new`'s metadata to `ticker`'s row and enqueues `symbol.updated` (with the full
/// metadata after the change), in the caller's transaction.
pub async fn write_update(
    tx: &mut Transaction<'_, Postgres>,
    ticker: &Ticker,
    new: &NewSymbol,
) -> Result<SymbolRow, sqlx::Error> {
    let row: SymbolRow = sqlx::query_as!(
        SymbolRow,
        "UPDATE symbols SET name = $2, exchange_mic = $3, currency = $4, asset_type = $5,
                updated_at = now()
         WHERE symbol = $1
         RETURNING symbol, name, exchange_mic, currency, asset_type, status, listed_at,
                updated_at, delisted_at, delisting_reason, reference_count, tracked_since",
        ticker.as_str(),
        &new.name,
        &new.exchange_mic,
        &new.currency,
        new.asset_type,
    )
    .fetch_one(&mut **tx)
    .await?;
    let event = ev::SymbolUpdated {
        symbol: row.symbol.clone(),
        name: row.name.clone(),
        exchange_mic: row.exchange_mic.clone(),
        currency: row.currency.clone(),
        asset_type: asset_type_of(&row.asset_type).into(),
    };
    outbox::enqueue(tx, SERVICE, &event, None).await?;
    Ok(row)
}

/// One symbol by ticker.
pub async fn get<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    ticker: &Ticker,
) -> Result<Option<SymbolRow>, sqlx::Error> {
    sqlx::query_as!(
        SymbolRow,
        "SELECT symbol, name, exchange_mic, currency, asset_type, status, listed_at,
                updated_at, delisted_at, delisting_reason, reference_count, tracked_since
           FROM symbols WHERE symbol = $1",
        ticker.as_str(),
    )
    .fetch_optional(executor)
    .await
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
    sqlx::query_as!(
        SymbolRow,
        "SELECT symbol, name, exchange_mic, currency, asset_type, status, listed_at,
                updated_at, delisted_at, delisting_reason, reference_count, tracked_since
           FROM (
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
         LIMIT $7",
        &search.query,
        search.asset_type,
        search.exchange_mic.as_deref(),
        search.include_delisted,
        after_rank,
        after_ticker,
        i64::from(search.limit) + 1,
        search.tracked_only,
        // The query as a LIKE pattern: `%` and `_` typed by the user match themselves.
        mirai_platform::db::like_escape(&search.query),
    )
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
