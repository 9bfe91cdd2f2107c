//! Data quality: the bars a check pass reads, the flags and findings it writes, and the
//! report's counts, findings and session days.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool};

use crate::domain::quality::ReportQuery;
use crate::quality::run::{Origin, Series};

/// The bars of `series` from `first` to `last`, after the `context` bars before `first` and
/// with the one bar after `last`, oldest first (`start_at, open, high, low, close, volume,
/// quality_flags, context`).
pub async fn window(
    conn: &mut PgConnection,
    series: &Series,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    context: i64,
) -> Result<Vec<PgRow>, sqlx::Error> {
    sqlx::query(
        "SELECT start_at, open, high, low, close, volume, quality_flags, start_at < $3 AS context
         FROM (
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at < $3
             ORDER BY start_at DESC LIMIT $5)
            UNION ALL
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2
               AND start_at >= $3 AND start_at <= $4)
            UNION ALL
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at > $4
             ORDER BY start_at LIMIT 1)
         ) b ORDER BY start_at",
    )
    .bind(&series.symbol)
    .bind(series.timeframe as i16)
    .bind(first)
    .bind(last)
    .bind(context)
    .fetch_all(&mut *conn)
    .await
}

/// Sets the quality flags of the bars of `series` starting at `at` (`flags` in step).
pub async fn set_flags(
    conn: &mut PgConnection,
    series: &Series,
    at: &[DateTime<Utc>],
    flags: &[i32],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE bars b SET quality_flags = u.flags
             FROM unnest($3::timestamptz[], $4::int4[]) AS u(start_at, flags)
             WHERE b.symbol = $1 AND b.timeframe = $2 AND b.start_at = u.start_at",
    )
    .bind(&series.symbol)
    .bind(series.timeframe as i16)
    .bind(at)
    .bind(flags)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the findings (`at`, `flag`, `detail` in step); returns the new or changed ones
/// (`bar_start, flag, detail`).
pub async fn record(
    conn: &mut PgConnection,
    series: &Series,
    at: &[DateTime<Utc>],
    flag: &[i16],
    detail: &[String],
    origin: Origin<'_>,
) -> Result<Vec<PgRow>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO quality_issues (symbol, timeframe, bar_start, flag, detail, source, import_id)
         SELECT $1, $2, u.bar_start, u.flag, u.detail, $6, $7
         FROM unnest($3::timestamptz[], $4::int2[], $5::text[]) AS u(bar_start, flag, detail)
         ON CONFLICT (symbol, timeframe, bar_start, flag) DO UPDATE
            SET detail = EXCLUDED.detail, source = EXCLUDED.source,
                import_id = EXCLUDED.import_id, detected_at = now()
            WHERE quality_issues.detail IS DISTINCT FROM EXCLUDED.detail
         RETURNING bar_start, flag, detail",
    )
    .bind(&series.symbol)
    .bind(series.timeframe as i16)
    .bind(at)
    .bind(flag)
    .bind(detail)
    .bind(origin.source)
    .bind(origin.import_id)
    .fetch_all(&mut *conn)
    .await
}

/// The range of a report, over `bars` (`$1`-`$4`: symbol, timeframe, start, end).
const RANGE: &str = "symbol = $1 AND timeframe = $2
                 AND ($3::timestamptz IS NULL OR start_at >= $3)
                 AND ($4::timestamptz IS NULL OR start_at < $4)";

/// Bars checked and clean, and the first and last bar start, in the report's range.
pub async fn totals(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
) -> Result<PgRow, sqlx::Error> {
    let (range, tf) = (RANGE, query.timeframe as i16);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) AS checked, count(*) FILTER (WHERE quality_flags = 0) AS clean,
                min(start_at) AS first, max(start_at) AS last
         FROM bars WHERE {range}"
    )))
    .bind(symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .fetch_one(pool)
    .await
}

/// `(flag, bars carrying it)` in the report's range, by flag.
pub async fn counts(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
) -> Result<Vec<(i32, i64)>, sqlx::Error> {
    let (range, tf) = (RANGE, query.timeframe as i16);
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT f, count(*) FROM bars, generate_series(1, 10) AS f
         WHERE {range} AND quality_flags & (1 << f) <> 0
         GROUP BY f ORDER BY f"
    )))
    .bind(symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .fetch_all(pool)
    .await
}

/// The findings the bars in the report's range still carry, after the page token's key
/// (`bar_start, flag, detail, detected_at`), one more than `max_issues` when another page
/// exists.
pub async fn issues(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
) -> Result<Vec<(DateTime<Utc>, i16, String, DateTime<Utc>)>, sqlx::Error> {
    let tf = query.timeframe as i16;
    let (after_at, after_flag) = query.after.unzip();
    sqlx::query_as(
        "SELECT q.bar_start, q.flag, q.detail, q.detected_at
         FROM quality_issues q
         JOIN bars b ON b.symbol = q.symbol AND b.timeframe = q.timeframe
                    AND b.start_at = q.bar_start
         WHERE q.symbol = $1 AND q.timeframe = $2
           AND ($3::timestamptz IS NULL OR q.bar_start >= $3)
           AND ($4::timestamptz IS NULL OR q.bar_start < $4)
           AND b.quality_flags & (1 << q.flag) <> 0
           AND ($5::timestamptz IS NULL OR (q.bar_start, q.flag) > ($5, $6))
         ORDER BY q.bar_start, q.flag
         LIMIT $7",
    )
    .bind(symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .bind(after_at)
    .bind(after_flag.unwrap_or(0))
    .bind(i64::from(query.max_issues) + 1)
    .fetch_all(pool)
    .await
}

/// The local dates (in `time_zone`) with bars in the report's range, in order.
pub async fn days(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
    time_zone: &str,
) -> Result<Vec<NaiveDate>, sqlx::Error> {
    let (range, tf) = (RANGE, query.timeframe as i16);
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT (start_at AT TIME ZONE $5)::date AS day FROM bars
             WHERE {range} ORDER BY day"
    )))
    .bind(symbol)
    .bind(tf)
    .bind(query.start)
    .bind(query.end)
    .bind(time_zone)
    .fetch_all(pool)
    .await
}
