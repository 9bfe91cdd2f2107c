//! Bulk import: the symbols a file names, and the bars through a temporary table with `COPY`.

use chrono::{DateTime, Utc};
use mirai_platform::db::copy::BinaryRows;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::quality;

/// `(symbol, exchange_mic, asset_type, status)` of each stored symbol among `names`.
pub async fn symbols(
    pool: &PgPool,
    names: &[String],
) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT symbol, exchange_mic, asset_type, status FROM symbols WHERE symbol = ANY($1)",
        names,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.symbol, r.exchange_mic, r.asset_type, r.status))
        .collect())
}

/// Whether no bar of `timeframe` is stored for any of `symbols` between its first and last
/// start (`firsts`, `lasts` in step): the ranges of a first import.
pub async fn untouched(
    conn: &mut PgConnection,
    timeframe: pb::Timeframe,
    symbols: &[String],
    firsts: &[DateTime<Utc>],
    lasts: &[DateTime<Utc>],
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT NOT EXISTS (
            SELECT 1 FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[])
                AS r(symbol, first_at, last_at)
            WHERE EXISTS (SELECT 1 FROM bars b
                WHERE b.symbol = r.symbol AND b.timeframe = $1
                  AND b.start_at BETWEEN r.first_at AND r.last_at)
         ) AS "untouched!""#,
        timeframe as i16,
        symbols,
        firsts,
        lasts,
    )
    .fetch_one(conn)
    .await
}

/// Copies `rows` (`bars`' columns but `ingested_at`, in table order) straight into `bars`: a
/// first import's bars, none of which is stored yet (a concurrent writer that stored one
/// meanwhile makes it fail with a unique violation).
pub async fn copy_new(conn: &mut PgConnection, rows: BinaryRows) -> Result<(), sqlx::Error> {
    rows.copy(
        conn,
        "COPY bars (symbol, timeframe, start_at, end_at, open, high, low, close, volume, vwap,
                    trade_count, adjustment, source, quality_flags) FROM STDIN (FORMAT binary)",
    )
    .await?;
    Ok(())
}

/// Copies `rows` (symbol, start, end, OHLCV, vwap, trade count, flags) into the temporary table
/// `import_bars`, dropped at commit.
pub async fn copy(conn: &mut PgConnection, rows: BinaryRows) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "CREATE TEMP TABLE import_bars (
            symbol TEXT, start_at TIMESTAMPTZ, end_at TIMESTAMPTZ, open FLOAT8, high FLOAT8,
            low FLOAT8, close FLOAT8, volume FLOAT8, vwap FLOAT8, trade_count BIGINT,
            flags INTEGER
         ) ON COMMIT DROP",
    )
    .execute(&mut *conn)
    .await?;
    rows.copy(conn, "COPY import_bars FROM STDIN (FORMAT binary)")
        .await?;
    Ok(())
}

/// Moves `import_bars` into `bars`: new bars inserted, identical ones left alone, changed ones
/// replaced and flagged `VALUE_CHANGED`. Returns (inserted, updated). Unchecked: it reads this
/// session's temporary table, which no schema has.
pub async fn insert(
    conn: &mut PgConnection,
    timeframe: pb::Timeframe,
    source: &str,
) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "WITH written AS (
            INSERT INTO bars AS b (symbol, timeframe, start_at, end_at, open, high, low, close,
                                   volume, vwap, trade_count, adjustment, source, quality_flags)
            SELECT symbol, $1, start_at, end_at, open, high, low, close, volume, vwap,
                   trade_count, $2, $3, flags
            FROM import_bars
            ON CONFLICT (symbol, timeframe, start_at) DO UPDATE
                SET end_at = EXCLUDED.end_at, open = EXCLUDED.open, high = EXCLUDED.high,
                    low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
                    vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count,
                    source = EXCLUDED.source, ingested_at = now(),
                    quality_flags = EXCLUDED.quality_flags | $4
                WHERE (b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
                      IS DISTINCT FROM
                      (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                       EXCLUDED.volume, EXCLUDED.vwap, EXCLUDED.trade_count)
            RETURNING (xmax = 0) AS inserted
         )
         SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
         FROM written",
    )
    .bind(timeframe as i16)
    .bind(pb::Adjustment::Raw as i16)
    .bind(source)
    .bind(quality::bit(pb::QualityFlag::ValueChanged))
    .fetch_one(conn)
    .await
}
