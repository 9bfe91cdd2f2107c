//! Data quality: the bars a check pass reads, the flags and findings it writes, and the
//! report's counts, findings and session days.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::quality::ReportQuery;
use crate::quality::run::{Origin, Series};

/// A bar of [`window`]; `context` for the bars before `first`.
pub struct WindowBar {
    pub start_at: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub quality_flags: i32,
    pub context: bool,
}

/// The bars of `series` from `first` to `last`, after the `context` bars before `first` and
/// with the one bar after `last`, oldest first.
pub async fn window(
    conn: &mut PgConnection,
    series: &Series,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    context: i64,
) -> Result<Vec<WindowBar>, sqlx::Error> {
    // The columns of a UNION have no known nullability: they are the NOT NULL ones of `bars`.
    sqlx::query_as!(
        WindowBar,
        r#"SELECT start_at AS "start_at!", open AS "open!", high AS "high!", low AS "low!",
                close AS "close!", volume AS "volume!", quality_flags AS "quality_flags!",
                start_at < $3 AS "context!"
         FROM (
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at < $3
             ORDER BY start_at DESC LIMIT $5)
            UNION ALL
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2
               AND start_at >= $3 AND start_at <= $4)
            UNION ALL
            (SELECT * FROM bars WHERE symbol = $1 AND timeframe = $2 AND start_at > $4
             ORDER BY start_at LIMIT 1)
         ) b ORDER BY start_at"#,
        &series.symbol,
        series.timeframe as i16,
        first,
        last,
        context,
    )
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
    sqlx::query!(
        "UPDATE bars b SET quality_flags = u.flags
             FROM unnest($3::timestamptz[], $4::int4[]) AS u(start_at, flags)
             WHERE b.symbol = $1 AND b.timeframe = $2 AND b.start_at = u.start_at",
        &series.symbol,
        series.timeframe as i16,
        at,
        flags,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A finding [`record`] stored or changed.
pub struct Recorded {
    pub bar_start: DateTime<Utc>,
    pub flag: i16,
    pub detail: String,
}

/// Records the findings (`at`, `flag`, `detail` in step); returns the new or changed ones.
pub async fn record(
    conn: &mut PgConnection,
    series: &Series,
    at: &[DateTime<Utc>],
    flag: &[i16],
    detail: &[String],
    origin: Origin<'_>,
) -> Result<Vec<Recorded>, sqlx::Error> {
    sqlx::query_as!(
        Recorded,
        "INSERT INTO quality_issues (symbol, timeframe, bar_start, flag, detail, source, import_id)
         SELECT $1, $2, u.bar_start, u.flag, u.detail, $6, $7
         FROM unnest($3::timestamptz[], $4::int2[], $5::text[]) AS u(bar_start, flag, detail)
         ON CONFLICT (symbol, timeframe, bar_start, flag) DO UPDATE
            SET detail = EXCLUDED.detail, source = EXCLUDED.source,
                import_id = EXCLUDED.import_id, detected_at = now()
            WHERE quality_issues.detail IS DISTINCT FROM EXCLUDED.detail
         RETURNING bar_start, flag, detail",
        &series.symbol,
        series.timeframe as i16,
        at,
        flag,
        detail,
        origin.source,
        origin.import_id,
    )
    .fetch_all(&mut *conn)
    .await
}

// The range of a report, over `bars` (`$1`-`$4`: symbol, timeframe, start, end), is the same
// condition in [`totals`], [`counts`] and [`days`].

/// [`totals`]: bars checked and clean, and the first and last bar start.
pub struct Totals {
    pub checked: i64,
    pub clean: i64,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
}

/// Bars checked and clean, and the first and last bar start, in the report's range.
pub async fn totals(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
) -> Result<Totals, sqlx::Error> {
    let tf = query.timeframe as i16;
    sqlx::query_as!(
        Totals,
        r#"SELECT count(*) AS "checked!", count(*) FILTER (WHERE quality_flags = 0) AS "clean!",
                min(start_at) AS first, max(start_at) AS last
         FROM bars WHERE symbol = $1 AND timeframe = $2
           AND start_at >= COALESCE($3::timestamptz, '-infinity')
           AND start_at < COALESCE($4::timestamptz, 'infinity')"#,
        symbol,
        tf,
        query.start,
        query.end,
    )
    .fetch_one(pool)
    .await
}

/// `(flag, bars carrying it)` in the report's range, by flag.
pub async fn counts(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
) -> Result<Vec<(i32, i64)>, sqlx::Error> {
    let tf = query.timeframe as i16;
    let rows = sqlx::query!(
        r#"SELECT f AS "f!", count(*) AS "count!" FROM bars, generate_series(1, 10) AS f
         WHERE symbol = $1 AND timeframe = $2
           AND start_at >= COALESCE($3::timestamptz, '-infinity')
           AND start_at < COALESCE($4::timestamptz, 'infinity') AND quality_flags & (1 << f) <> 0
         GROUP BY f ORDER BY f"#,
        symbol,
        tf,
        query.start,
        query.end,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.f, r.count)).collect())
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
    let rows = sqlx::query!(
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
        symbol,
        tf,
        query.start,
        query.end,
        after_at,
        after_flag.unwrap_or(0),
        i64::from(query.max_issues) + 1,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.bar_start, r.flag, r.detail, r.detected_at))
        .collect())
}

/// The local dates (in `time_zone`) with bars in the report's range, in order.
pub async fn days(
    pool: &PgPool,
    symbol: &str,
    query: &ReportQuery,
    time_zone: &str,
) -> Result<Vec<NaiveDate>, sqlx::Error> {
    let tf = query.timeframe as i16;
    sqlx::query_scalar!(
        r#"SELECT DISTINCT (start_at AT TIME ZONE $5)::date AS "day!" FROM bars
             WHERE symbol = $1 AND timeframe = $2
           AND start_at >= COALESCE($3::timestamptz, '-infinity')
           AND start_at < COALESCE($4::timestamptz, 'infinity') ORDER BY 1"#,
        symbol,
        tf,
        query.start,
        query.end,
        time_zone,
    )
    .fetch_all(pool)
    .await
}
