//! The live ingest path's statements: the symbol's row, the newest bar of a source, the bar
//! write, and what the events carry.

use chrono::{DateTime, Utc};
use mirai_proto::stock::v1::{self as pb, QualityFlag, Timeframe};
use sqlx::PgConnection;

use crate::ingest::LiveBar;
use crate::quality::bit;

/// `symbol`'s `(exchange_mic, asset_type, status)`, its row locked for the transaction.
pub async fn lock_symbol(
    conn: &mut PgConnection,
    symbol: &str,
) -> Result<Option<(String, String, String)>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT exchange_mic, asset_type, status FROM symbols WHERE symbol = $1 FOR UPDATE",
        symbol,
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.exchange_mic, r.asset_type, r.status)))
}

/// The start of the newest stored bar of `symbol` and `timeframe` from `source`.
pub async fn newest_start(
    conn: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
    source: &str,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let tf = timeframe as i16;
    sqlx::query_scalar!(
        "SELECT max(start_at) FROM bars WHERE symbol = $1 AND timeframe = $2 AND source = $3",
        symbol,
        tf,
        source,
    )
    .fetch_one(conn)
    .await
}

/// Writes `bar` from `source` with `flags`: inserted, or replacing a stored bar with other
/// values (flagged `VALUE_CHANGED`). `Some(true)` inserted, `Some(false)` replaced, `None` an
/// identical bar was already stored.
pub async fn write_bar(
    conn: &mut PgConnection,
    bar: &LiveBar,
    source: &str,
    flags: i32,
) -> Result<Option<bool>, sqlx::Error> {
    let tf = bar.timeframe as i16;
    sqlx::query_scalar!(
        r#"INSERT INTO bars AS b (symbol, timeframe, start_at, end_at, open, high, low, close,
                                   volume, vwap, trade_count, adjustment, source, quality_flags)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
             ON CONFLICT (symbol, timeframe, start_at) DO UPDATE
                SET end_at = EXCLUDED.end_at, open = EXCLUDED.open, high = EXCLUDED.high,
                    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
                    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count,
                    source = EXCLUDED.source, ingested_at = now(),
                    quality_flags = EXCLUDED.quality_flags | $15
                WHERE (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
                      IS DISTINCT FROM
                      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                       EXCLUDED.volume, EXCLUDED.vwap, EXCLUDED.trade_count)
             RETURNING (xmax = 0) AS "inserted!""#,
        &bar.symbol,
        tf,
        bar.start,
        bar.end,
        bar.open,
        bar.high,
        bar.low,
        bar.close,
        bar.volume,
        bar.vwap,
        bar.trade_count,
        pb::Adjustment::Raw as i16,
        source,
        flags,
        bit(QualityFlag::ValueChanged),
    )
    .fetch_optional(conn)
    .await
}

/// The stored quality flags of one bar.
pub async fn flags(
    conn: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
    start: DateTime<Utc>,
) -> Result<i32, sqlx::Error> {
    let tf = timeframe as i16;
    sqlx::query_scalar!(
        "SELECT quality_flags FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at = $3",
        symbol,
        tf,
        start,
    )
    .fetch_one(conn)
    .await
}

/// The close of the bar before `start`.
pub async fn previous_close(
    conn: &mut PgConnection,
    symbol: &str,
    timeframe: Timeframe,
    start: DateTime<Utc>,
) -> Result<Option<f64>, sqlx::Error> {
    let tf = timeframe as i16;
    sqlx::query_scalar!(
        "SELECT close FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at < $3
             ORDER BY start_at DESC LIMIT 1",
        symbol,
        tf,
        start,
    )
    .fetch_optional(conn)
    .await
}

/// The exchange of an active `symbol`, its row locked for the transaction.
pub async fn active_mic(
    conn: &mut PgConnection,
    symbol: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT exchange_mic FROM symbols WHERE symbol = $1 AND status = 'active'
                 FOR UPDATE",
        symbol,
    )
    .fetch_optional(conn)
    .await
}
