//! The bars a replay plays.

use chrono::{DateTime, Utc};
use mirai_proto::stock::v1 as pb;
use sqlx::PgPool;

use crate::domain::Ticker;

/// A stored bar, as a replay emits it.
pub struct BarRow {
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub vwap: Option<f64>,
    pub trade_count: Option<i64>,
    pub quality_flags: i32,
}

/// How many bars of `ticker` and `timeframe` start in `[from, to)` (either end open).
pub async fn count(
    pool: &PgPool,
    ticker: &Ticker,
    timeframe: pb::Timeframe,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM bars WHERE symbol = $1 AND timeframe = $2
               AND ($3::timestamptz IS NULL OR start_at >= $3)
               AND ($4::timestamptz IS NULL OR start_at < $4)"#,
        ticker.as_str(),
        timeframe as i16,
        from,
        to,
    )
    .fetch_one(pool)
    .await
}

/// Up to 1,000 bars, oldest first, starting after `after` (at or after it when `first`), before
/// `to`.
pub async fn page(
    pool: &PgPool,
    symbol: &str,
    timeframe: pb::Timeframe,
    after: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    first: bool,
) -> Result<Vec<BarRow>, sqlx::Error> {
    sqlx::query_as!(
        BarRow,
        "SELECT start_at, end_at, open, high, low, close, volume, vwap, trade_count,
                        quality_flags
                 FROM bars WHERE symbol = $1 AND timeframe = $2
                   AND ($3::timestamptz IS NULL OR start_at > $3 OR ($5 AND start_at = $3))
                   AND ($4::timestamptz IS NULL OR start_at < $4)
                 ORDER BY start_at LIMIT 1000",
        symbol,
        timeframe as i16,
        after,
        to,
        first,
    )
    .fetch_all(pool)
    .await
}
