//! The bar read model.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::{Bar, BarSeries, Range, Symbol, Timeframe};

/// Where a batch of bars came from, and how current it is.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// `mirai.stock.v1.Adjustment` of the prices.
    pub adjustment: i32,
    /// "alpaca", "replay", "import", ...
    pub source: String,
    /// When the information was current: the event's time, or when stock-data was read.
    pub as_of: DateTime<Utc>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Bars new to the read model.
    pub inserted: u64,
    /// Stored bars whose values changed.
    pub updated: u64,
}

/// Inserts new bars and replaces stored ones whose values differ, unless the stored row is
/// newer information (see the migration). Identical bars change nothing. One statement for the
/// whole batch (a backfill page is up to 10,000 bars).
pub async fn upsert(
    conn: &mut PgConnection,
    bars: &[Bar],
    provenance: &Provenance,
) -> Result<Applied, sqlx::Error> {
    if bars.is_empty() {
        return Ok(Applied::default());
    }
    let mut symbol = Vec::with_capacity(bars.len());
    let mut timeframe = Vec::with_capacity(bars.len());
    let mut start = Vec::with_capacity(bars.len());
    let mut end = Vec::with_capacity(bars.len());
    let (mut open, mut high, mut low, mut close, mut volume) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut vwap = Vec::with_capacity(bars.len());
    let mut trades = Vec::with_capacity(bars.len());
    for bar in bars {
        symbol.push(bar.symbol.as_str().to_owned());
        timeframe.push(bar.timeframe.code());
        start.push(bar.start);
        end.push(bar.end);
        open.push(bar.open);
        high.push(bar.high);
        low.push(bar.low);
        close.push(bar.close);
        volume.push(bar.volume);
        vwap.push(bar.vwap);
        trades.push(bar.trade_count);
    }
    let rows = sqlx::query!(
        r#"INSERT INTO bars AS b (symbol, timeframe, start_at, end_at, open, high, low, close,
                               volume, vwap, trade_count, adjustment, source, as_of)
         SELECT *, $12::int, $13::text, $14::timestamptz
         FROM UNNEST($1::text[], $2::int[], $3::timestamptz[], $4::timestamptz[],
                     $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::float8[],
                     $10::float8[], $11::int8[])
         ON CONFLICT (symbol, timeframe, start_at) DO UPDATE
            SET end_at = EXCLUDED.end_at, open = EXCLUDED.open, high = EXCLUDED.high,
                low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
                vwap = EXCLUDED.vwap, trade_count = EXCLUDED.trade_count,
                adjustment = EXCLUDED.adjustment, source = EXCLUDED.source,
                as_of = EXCLUDED.as_of, updated_at = now()
            WHERE b.as_of <= EXCLUDED.as_of
              AND (b.end_at, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count,
                   b.adjustment)
                  IS DISTINCT FROM
                  (EXCLUDED.end_at, EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close,
                   EXCLUDED.volume, EXCLUDED.vwap, EXCLUDED.trade_count, EXCLUDED.adjustment)
         RETURNING (xmax = 0) AS "inserted!""#,
        &symbol,
        &timeframe,
        &start,
        // Arrays with NULLs (an open bar has no end, a bar may lack VWAP or a trade count): not
        // the macro's parameter types (`&[DateTime<Utc>]`, `&[f64]`, `&[i64]`), so unchecked.
        &end as _,
        &open,
        &high,
        &low,
        &close,
        &volume,
        &vwap as _,
        &trades as _,
        provenance.adjustment,
        &provenance.source,
        provenance.as_of,
    )
    .fetch_all(conn)
    .await?;
    let inserted = rows.iter().filter(|r| r.inserted).count() as u64;
    Ok(Applied {
        inserted,
        updated: rows.len() as u64 - inserted,
    })
}

/// A symbol's bars of one timeframe in `range`, oldest first, and their adjustment basis
/// (of the newest bar; unspecified when there are none).
pub async fn load(
    pool: &PgPool,
    symbol: &Symbol,
    timeframe: Timeframe,
    range: &Range,
) -> Result<(BarSeries, i32), sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT start_at, open, high, low, close, volume, adjustment FROM bars
         WHERE symbol = $1 AND timeframe = $2
           AND start_at >= COALESCE($3::timestamptz, '-infinity')
           AND start_at < COALESCE($4::timestamptz, 'infinity')
         ORDER BY start_at",
        symbol.as_str(),
        timeframe.code(),
        range.start,
        range.end,
    )
    .fetch_all(pool)
    .await?;
    let mut series = BarSeries::default();
    let mut adjustment = 0;
    for row in rows {
        series.push(
            row.start_at,
            [row.open, row.high, row.low, row.close, row.volume],
        );
        adjustment = row.adjustment;
    }
    Ok((series, adjustment))
}

/// Whether the read model holds any bar of `symbol` in `timeframe`.
pub async fn exists(
    pool: &PgPool,
    symbol: &Symbol,
    timeframe: Timeframe,
) -> Result<bool, sqlx::Error> {
    // Not `AS "exists!"`: stock-data has that statement, over a `bars` table of its own (see
    // scripts/sqlx-prepare on identical SQL in two crates).
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM bars WHERE symbol = $1 AND timeframe = $2) AS "held!""#,
        symbol.as_str(),
        timeframe.code()
    )
    .fetch_one(pool)
    .await
}

/// Start of the newest stored bar of `symbol` in `timeframe`.
pub async fn last_start(
    pool: &PgPool,
    symbol: &Symbol,
    timeframe: Timeframe,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT max(start_at) FROM bars WHERE symbol = $1 AND timeframe = $2",
        symbol.as_str(),
        timeframe.code()
    )
    .fetch_one(pool)
    .await
}

/// Every symbol with daily bars that is not delisted in the symbol read model, by ticker.
pub async fn active_symbols(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT DISTINCT b.symbol FROM bars b
         LEFT JOIN symbols s ON s.symbol = b.symbol
         WHERE b.timeframe = $1 AND NOT coalesce(s.delisted, false)
         ORDER BY b.symbol",
        Timeframe::DAY.code(),
    )
    .fetch_all(pool)
    .await
}

/// Every ticker the read model has heard of (symbol events or bars).
pub async fn known_symbols(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT symbol AS "symbol!" FROM symbols WHERE NOT delisted
         UNION SELECT DISTINCT symbol FROM bars ORDER BY 1"#,
    )
    .fetch_all(pool)
    .await
}

/// Daily-bar count and first/last start per symbol, for `ListSymbols`.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub count: i64,
    pub first: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
}

pub async fn coverage(
    pool: &PgPool,
    symbols: &[String],
) -> Result<std::collections::HashMap<String, Coverage>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT symbol, count(*) AS "n!", min(start_at) AS first, max(start_at) AS last
         FROM bars WHERE symbol = ANY($1) AND timeframe = $2 GROUP BY symbol"#,
        symbols,
        Timeframe::DAY.code(),
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.symbol,
                Coverage {
                    count: r.n,
                    first: r.first,
                    last: r.last,
                },
            )
        })
        .collect())
}
