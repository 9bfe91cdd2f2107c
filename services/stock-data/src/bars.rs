//! OHLCV bars: storage, the sample-data loader, and range queries with aggregation.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::calendar::Calendar;
use crate::domain::bars::{EXCHANGES, Query, time_zone};
use crate::domain::{NewSymbol, Ticker};
use crate::error::{Error, Result, db};
use crate::quality;
use crate::symbols;

/// Timeframes and how coarser ones are built from finer stored ones.
fn source_timeframe(requested: pb::Timeframe) -> &'static [pb::Timeframe] {
    use pb::Timeframe::*;
    match requested {
        OneWeek | OneMonth => &[OneDay],
        OneDay => &[OneDay, OneMinute],
        FiveMinutes | FifteenMinutes | ThirtyMinutes | OneHour => &[OneMinute],
        OneMinute => &[OneMinute],
        Unspecified => &[],
    }
}

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

/// The S&P 500 daily history shipped with the repository (see `sample/README.md`).
const SP500: &str = include_str!("../sample/sp500-2000.csv");

/// Lists `SPX` (the S&P 500 index) if needed and loads its daily bars, idempotently: rows
/// already stored are left alone. New bars go through the quality checks like any ingest
/// (findings are recorded and announced, never repaired). Returns the number of new bars.
pub async fn load_sample(pool: &PgPool) -> Result<u64, sqlx::Error> {
    load_sample_with(pool, &quality::Settings::default()).await
}

/// [`load_sample`] with explicit quality settings.
pub async fn load_sample_with(
    pool: &PgPool,
    settings: &quality::Settings,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let spx = NewSymbol {
        ticker: Ticker::parse("SPX").expect("valid ticker"),
        name: "S&P 500 Index".to_owned(),
        exchange_mic: "XNYS".to_owned(),
        currency: "USD".to_owned(),
        asset_type: "index",
    };
    if symbols::get(&mut *tx, &spx.ticker).await?.is_none() {
        symbols::list(&mut tx, &spx).await?;
    }
    let loaded = copy_daily_csv(&mut tx, "SPX", "XNYS", SP500, "sample").await?;
    let series = quality::store::Series::new("SPX", pb::Timeframe::OneDay, "XNYS", "index");
    let origin = quality::store::Origin {
        source: "sample",
        import_id: "",
    };
    quality::store::check(&mut tx, settings, &series, &loaded, origin).await?;
    tx.commit().await?;
    Ok(loaded.len() as u64)
}

/// Loads `date,open,high,low,close,adjclose,volume` CSV rows of one symbol as raw daily bars
/// through `COPY`, each from the exchange's session open to its close (13:00 on the
/// calendar's early-close days); existing bars are kept. Returns the starts of the new bars,
/// oldest first.
async fn copy_daily_csv(
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
    sqlx::query(
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

#[derive(sqlx::FromRow)]
struct Row {
    bucket: DateTime<Utc>,
    start_at: DateTime<Utc>,
    end_at: DateTime<Utc>,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    vwap: Option<f64>,
    trade_count: Option<i64>,
    flags: i32,
    sources: i64,
    source: String,
    complete: bool,
}

/// One page of bars, aggregated from the finest stored timeframe when needed.
pub async fn get(pool: &PgPool, query: &Query) -> Result<pb::GetBarsResponse> {
    let status = db("bars");
    let symbol = symbols::get(pool, &query.ticker)
        .await
        .map_err(&status)?
        .ok_or_else(|| {
            Error::NotFound(format!("symbol {} is not listed", query.ticker.as_str()))
        })?;
    // The finest stored timeframe that can build the requested one.
    let mut source = None;
    for candidate in source_timeframe(query.timeframe) {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM bars WHERE symbol = $1 AND timeframe = $2)",
        )
        .bind(query.ticker.as_str())
        .bind(*candidate as i16)
        .fetch_one(pool)
        .await
        .map_err(&status)?;
        if exists {
            source = Some(*candidate);
            break;
        }
    }
    let mut response = pb::GetBarsResponse {
        symbol: symbol.symbol.clone(),
        timeframe: query.timeframe.into(),
        adjustment: pb::Adjustment::Raw.into(),
        ..Default::default()
    };
    let Some(source) = source else {
        return Ok(response);
    };
    let bucket_expr = if source == query.timeframe {
        "start_at"
    } else {
        bucket(query.timeframe)
    };
    let end_expr = if source == query.timeframe {
        "max(end_at)"
    } else {
        bucket_end(query.timeframe)
    };
    let (order, keyset) = if query.newest_first {
        ("DESC", "bucket < $6")
    } else {
        ("ASC", "bucket > $6")
    };
    let sql = format!(
        "WITH b AS (
            SELECT {bucket_expr} AS bucket, * FROM bars
            WHERE symbol = $1 AND timeframe = $3
              AND ($4::timestamptz IS NULL OR start_at >= $4)
              AND ($5::timestamptz IS NULL OR start_at < $5)
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
            WHERE $6::timestamptz IS NULL OR {keyset}
            GROUP BY bucket
            ORDER BY bucket {order}
            LIMIT $7
         )
         SELECT bucket, start_at, end_at, open, high, low, close, volume, vwap, trade_count,
                flags, sources, source,
                end_at <= now() AS complete
         FROM agg ORDER BY bucket {order}"
    );
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(query.ticker.as_str())
        .bind(time_zone(&symbol.exchange_mic))
        .bind(source as i16)
        .bind(query.start)
        .bind(query.end)
        .bind(query.after)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(pool)
        .await
        .map_err(status)?;
    let more = rows.len() > query.limit as usize;
    let rows = &rows[..rows.len().min(query.limit as usize)];
    if more && let Some(last) = rows.last() {
        response.next_page_token = wire::page_token(&last.bucket.to_rfc3339());
    }
    let mut sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    sources.dedup();
    response.source = match sources.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        _ => "mixed".to_owned(),
    };
    response.bars = rows
        .iter()
        .map(|r| pb::Bar {
            symbol: symbol.symbol.clone(),
            timeframe: query.timeframe.into(),
            start: Some(wire::timestamp(r.start_at)),
            end: Some(wire::timestamp(r.end_at)),
            open: r.open,
            high: r.high,
            low: r.low,
            close: r.close,
            volume: r.volume,
            vwap: r.vwap,
            trade_count: r.trade_count.map(|n| n as u64),
            quality_flags: (1..=10).filter(|bit| r.flags & (1 << bit) != 0).collect(),
            source_bar_count: r.sources as u32,
            complete: r.complete,
        })
        .collect();
    Ok(response)
}
