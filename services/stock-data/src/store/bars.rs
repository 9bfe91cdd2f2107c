//! Bars: the sample loader's `COPY`, and the range query with aggregation to coarser
//! timeframes.

use chrono::{DateTime, Utc};
use mirai_proto::stock::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::calendar::Calendar;
use crate::domain::Ticker;
use crate::domain::bars::{EXCHANGES, Query};

/// The SQL expression (over `start_at` and the time zone in `$tz`) naming a bar's bucket when
/// aggregating to `timeframe`.
fn bucket(timeframe: pb::Timeframe) -> &'static str {
    use pb::Timeframe::*;
    match timeframe {
        OneWeek => "date_trunc('week', start_at AT TIME ZONE $2) AT TIME ZONE $2",
        OneMonth => "date_trunc('month', start_at AT TIME ZONE $2) AT TIME ZONE $2",
        OneDay => "date_trunc('day', start_at AT TIME ZONE $2) AT TIME ZONE $2",
        OneHour => "date_bin('1 hour', start_at, TIMESTAMPTZ '2000-01-01Z')",
        ThirtyMinutes => "date_bin('30 minutes', start_at, TIMESTAMPTZ '2000-01-01Z')",
        FifteenMinutes => "date_bin('15 minutes', start_at, TIMESTAMPTZ '2000-01-01Z')",
        FiveMinutes => "date_bin('5 minutes', start_at, TIMESTAMPTZ '2000-01-01Z')",
        OneMinute | Unspecified => "start_at",
    }
}

/// The end of a bucket that starts at `bucket` (SQL, same parameters as [`bucket`]).
fn bucket_end(timeframe: pb::Timeframe) -> &'static str {
    use pb::Timeframe::*;
    match timeframe {
        OneWeek => "(bucket AT TIME ZONE $2 + interval '1 week') AT TIME ZONE $2",
        OneMonth => "(bucket AT TIME ZONE $2 + interval '1 month') AT TIME ZONE $2",
        OneDay => "(bucket AT TIME ZONE $2 + interval '1 day') AT TIME ZONE $2",
        OneHour => "bucket + interval '1 hour'",
        ThirtyMinutes => "bucket + interval '30 minutes'",
        FifteenMinutes => "bucket + interval '15 minutes'",
        FiveMinutes => "bucket + interval '5 minutes'",
        OneMinute | Unspecified => "bucket + interval '1 minute'",
    }
}

/// Loads `date,open,high,low,close,adjclose,volume` CSV rows of one symbol as raw daily bars
/// through `COPY`, each from the exchange's session open to its close (13:00 on the
/// calendar's early-close days); existing bars are kept. Returns the starts of the new bars,
/// oldest first.
pub async fn copy_daily_csv(
    conn: &mut PgConnection,
    symbol: &str,
    mic: &str,
    csv: &str,
    source: &str,
) -> Result<Vec<DateTime<Utc>>, sqlx::Error> {
    let exchange = EXCHANGES
        .iter()
        .find(|e| e.mic == mic)
        .expect("daily CSV loading needs a known exchange session");
    sqlx::query!(
        "CREATE TEMP TABLE daily_import (
            day DATE, open FLOAT8, high FLOAT8, low FLOAT8, close FLOAT8, adjclose FLOAT8,
            volume FLOAT8
         ) ON COMMIT DROP",
    )
    .execute(&mut *conn)
    .await?;
    let mut copy = conn
        .copy_in_raw("COPY daily_import FROM STDIN (FORMAT csv, HEADER true)")
        .await?;
    copy.send(csv.as_bytes()).await?;
    copy.finish().await?;
    let early_closes = Calendar::for_mic(mic)
        .map(|c| c.early_closes())
        .unwrap_or_default();
    // Unchecked: it reads this session's temporary table, which no schema has.
    let mut inserted: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "INSERT INTO bars (symbol, timeframe, start_at, end_at, open, high, low, close, volume,
                           adjustment, source)
         SELECT $1, $2, (day + $4::time) AT TIME ZONE $3,
                (day + CASE WHEN day = ANY($8) THEN '13:00'::time ELSE $5::time END)
                    AT TIME ZONE $3,
                open, high, low, close, volume, $6, $7
         FROM daily_import
         ON CONFLICT (symbol, timeframe, start_at) DO NOTHING
         RETURNING start_at",
    )
    .bind(symbol)
    .bind(pb::Timeframe::OneDay as i16)
    .bind(exchange.time_zone)
    .bind(exchange.open)
    .bind(exchange.close)
    .bind(pb::Adjustment::Raw as i16)
    .bind(source)
    .bind(&early_closes)
    .fetch_all(&mut *conn)
    .await?;
    inserted.sort();
    Ok(inserted)
}

/// A listed symbol and which of the candidate timeframes it has bars of.
pub struct Series {
    pub symbol: String,
    pub exchange_mic: String,
    /// The first candidate (in the order given) with at least one stored bar.
    pub source: Option<pb::Timeframe>,
}

/// `ticker`'s listing and the first of `candidates` it has bars of, in one statement; `None`
/// when it is not listed.
pub async fn series(
    pool: &PgPool,
    ticker: &Ticker,
    candidates: &[pb::Timeframe],
) -> Result<Option<Series>, sqlx::Error> {
    let codes: Vec<i16> = candidates.iter().map(|t| *t as i16).collect();
    let row = sqlx::query!(
        r#"SELECT s.symbol, s.exchange_mic,
                  (SELECT c.timeframe FROM unnest($2::smallint[]) WITH ORDINALITY AS c(timeframe, n)
                    WHERE EXISTS (SELECT 1 FROM bars b
                                   WHERE b.symbol = s.symbol AND b.timeframe = c.timeframe)
                    ORDER BY c.n LIMIT 1) AS source
           FROM symbols s WHERE s.symbol = $1"#,
        ticker.as_str(),
        &codes,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| Series {
        symbol: r.symbol,
        exchange_mic: r.exchange_mic,
        source: r
            .source
            .and_then(|code| candidates.iter().copied().find(|t| *t as i16 == code)),
    }))
}

/// One aggregated bucket of [`page`] (built from fragments per timeframe: unchecked).
#[derive(sqlx::FromRow)]
#[cfg_attr(test, derive(Debug, PartialEq))]
pub struct Row {
    pub bucket: DateTime<Utc>,
    pub start_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub vwap: Option<f64>,
    pub trade_count: Option<i64>,
    pub flags: i32,
    pub sources: i64,
    pub source: String,
    pub complete: bool,
}

/// One page of `query` (one row more than the limit when another page exists), built from the
/// stored `source` timeframe; calendar buckets (days, weeks, months) in `time_zone`.
pub async fn page(
    pool: &PgPool,
    query: &Query,
    time_zone: &str,
    source: pb::Timeframe,
) -> Result<Vec<Row>, sqlx::Error> {
    let sql = if source == query.timeframe {
        stored_sql(query.newest_first)
    } else {
        aggregated_sql(
            bucket(query.timeframe),
            bucket_end(query.timeframe),
            query.newest_first,
        )
    };
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(query.ticker.as_str())
        .bind(time_zone)
        .bind(source as i16)
        .bind(query.start)
        .bind(query.end)
        .bind(query.after)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(pool)
        .await
}

// Both statements take the same parameters: $1 symbol, $2 time zone, $3 stored timeframe,
// $4/$5 range, $6 keyset (the last bucket of the previous page), $7 limit. The optional bounds
// are COALESCEd rather than written `$4 IS NULL OR start_at >= $4`: PostgreSQL's generic plan
// (used from a prepared statement's sixth run on) can then still bound the primary key's range
// instead of reading every bar of the symbol.

/// The stored bars themselves (the requested timeframe is stored): one row per bucket, with
/// the values [`aggregated_sql`] gives a bucket of one bar, bit for bit — an index range scan
/// instead of a sort and a group per bar.
fn stored_sql(newest_first: bool) -> String {
    let (order, keyset) = if newest_first {
        ("DESC", "start_at < COALESCE($6, 'infinity')")
    } else {
        ("ASC", "start_at > COALESCE($6, '-infinity')")
    };
    format!(
        "SELECT start_at AS bucket, start_at, end_at, open, high, low, close, volume,
                CASE WHEN vwap IS NOT NULL AND volume > 0 THEN vwap * volume / volume END AS vwap,
                trade_count, quality_flags AS flags, 1::bigint AS sources, source,
                end_at <= now() AS complete
         FROM bars
         WHERE symbol = $1 AND timeframe = $3
           AND start_at >= COALESCE($4::timestamptz, '-infinity')
           AND start_at < COALESCE($5::timestamptz, 'infinity')
           AND {keyset}
         ORDER BY start_at {order}
         LIMIT $7"
    )
}

/// Buckets (`bucket_expr`, ending at `end_expr`: see [`bucket`] and [`bucket_end`])
/// aggregated from finer stored bars (open of the first, high max, low min, close of the last,
/// volume sum, volume-weighted vwap).
fn aggregated_sql(bucket_expr: &str, end_expr: &str, newest_first: bool) -> String {
    let (order, keyset) = if newest_first {
        ("DESC", "bucket < COALESCE($6::timestamptz, 'infinity')")
    } else {
        ("ASC", "bucket > COALESCE($6::timestamptz, '-infinity')")
    };
    format!(
        "WITH b AS (
            SELECT {bucket_expr} AS bucket, * FROM bars
            WHERE symbol = $1 AND timeframe = $3
              AND start_at >= COALESCE($4::timestamptz, '-infinity')
              AND start_at < COALESCE($5::timestamptz, 'infinity')
         ),
         agg AS (
            SELECT bucket, min(start_at) AS start_at, {end_expr} AS end_at,
                   (array_agg(open ORDER BY start_at))[1] AS open,
                   max(high) AS high, min(low) AS low,
                   (array_agg(close ORDER BY start_at DESC))[1] AS close,
                   sum(volume) AS volume, bit_or(quality_flags) AS flags,
                   CASE WHEN count(vwap) = count(*) AND sum(volume) > 0
                        THEN sum(vwap * volume) / sum(volume) END AS vwap,
                   CASE WHEN count(trade_count) = count(*)
                        THEN sum(trade_count)::bigint END AS trade_count,
                   count(*) AS sources,
                   CASE WHEN count(DISTINCT source) = 1 THEN min(source) ELSE 'mixed' END AS source
            FROM b
            WHERE {keyset}
            GROUP BY bucket
            ORDER BY bucket {order}
            LIMIT $7
         )
         SELECT bucket, start_at, end_at, open, high, low, close, volume, vwap, trade_count,
                flags, sources, source,
                end_at <= now() AS complete
         FROM agg ORDER BY bucket {order}"
    )
}

/// The start of the newest stored bar of `timeframe` from `source`, per symbol.
pub async fn newest_starts(
    pool: &PgPool,
    source: &str,
    timeframe: pb::Timeframe,
) -> Result<Vec<(String, DateTime<Utc>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT symbol, max(start_at) AS "max!" FROM bars WHERE source = $1 AND timeframe = $2
             GROUP BY symbol"#,
        source,
        timeframe as i16,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| (r.symbol, r.max)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored-timeframe statement answers what the aggregating one answers for buckets of
    /// one bar — every column, bit for bit — over bounds, keysets and both orders, with the
    /// edge values (no vwap, zero volume, no trade count, flags).
    #[tokio::test]
    async fn stored_bars_read_like_buckets_of_one_bar() {
        let (_db, pool) = crate::test_db::with_acme("bars_stored_sql").await;
        // 40 daily bars; vwap missing on every 3rd, volume 0 on every 5th, trade count missing
        // on every 4th, a flag on every 7th, the last one still open.
        sqlx::query(
            "INSERT INTO bars (symbol, timeframe, start_at, end_at, open, high, low, close,
                               volume, vwap, trade_count, adjustment, source, quality_flags)
             SELECT 'ACME', $1, now() - (40 - i) * interval '1 day',
                    now() - (40 - i) * interval '1 day' + interval '6.5 hours',
                    100 + i * 0.1, 101 + i * 0.37, 99 - i * 0.13, 100 + i * 0.29,
                    CASE WHEN i % 5 = 0 THEN 0 ELSE 1000.5 * i END,
                    CASE WHEN i % 3 = 0 THEN NULL ELSE 100.123456789 + i / 7.0 END,
                    CASE WHEN i % 4 = 0 THEN NULL ELSE i * 11 END,
                    1, CASE WHEN i % 2 = 0 THEN 'alpaca' ELSE 'import' END,
                    CASE WHEN i % 7 = 0 THEN 4 ELSE 0 END
             FROM generate_series(1, 40) AS i",
        )
        .bind(pb::Timeframe::OneDay as i16)
        .execute(&pool)
        .await
        .unwrap();
        let starts: Vec<DateTime<Utc>> =
            sqlx::query_scalar("SELECT start_at FROM bars ORDER BY start_at")
                .fetch_all(&pool)
                .await
                .unwrap();
        let run = async |sql: String, bounds: [Option<DateTime<Utc>>; 3], limit: i64| {
            let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind("ACME")
                .bind("America/New_York")
                .bind(pb::Timeframe::OneDay as i16)
                .bind(bounds[0])
                .bind(bounds[1])
                .bind(bounds[2])
                .bind(limit)
                .fetch_all(&pool)
                .await
                .unwrap();
            rows
        };
        let cases = [
            [None, None, None],
            [Some(starts[5]), None, None],
            [None, Some(starts[30]), None],
            [Some(starts[5]), Some(starts[30]), Some(starts[12])],
            [None, None, Some(starts[20])],
        ];
        // Seven runs of each: the sixth and seventh use PostgreSQL's generic plan.
        for round in 0..7 {
            for newest_first in [false, true] {
                for bounds in &cases {
                    let limit = if round % 2 == 0 { 1000 } else { 7 };
                    let stored = run(stored_sql(newest_first), *bounds, limit).await;
                    // What every stored-timeframe query ran before: one bucket per bar.
                    let aggregated = run(
                        aggregated_sql("start_at", "max(end_at)", newest_first),
                        *bounds,
                        limit,
                    )
                    .await;
                    assert!(!stored.is_empty());
                    assert_eq!(stored, aggregated, "{bounds:?} newest first {newest_first}");
                }
            }
        }
        pool.close().await;
    }
}
