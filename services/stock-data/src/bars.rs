//! OHLCV bars: the sample-data loader, and range queries with aggregation (the statements are
//! in [`crate::store::bars`]).

use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::PgPool;

use crate::domain::bars::{Query, source_timeframe, time_zone};
use crate::domain::{NewSymbol, Ticker};
use crate::error::{Error, Result, db};
use crate::quality;
use crate::store;

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
    if store::symbols::get(&mut *tx, &spx.ticker).await?.is_none() {
        store::symbols::list(&mut tx, &spx).await?;
    }
    let loaded = store::bars::copy_daily_csv(&mut tx, "SPX", "XNYS", SP500, "sample").await?;
    let series = quality::run::Series::new("SPX", pb::Timeframe::OneDay, "XNYS", "index");
    let origin = quality::run::Origin {
        source: "sample",
        import_id: "",
    };
    quality::run::check(&mut tx, settings, &series, &loaded, origin).await?;
    tx.commit().await?;
    Ok(loaded.len() as u64)
}

/// One page of bars, aggregated from the finest stored timeframe when needed.
pub async fn get(pool: &PgPool, query: &Query) -> Result<pb::GetBarsResponse> {
    let status = db("bars");
    // The symbol, and the finest stored timeframe that can build the requested one.
    let series = store::bars::series(pool, &query.ticker, source_timeframe(query.timeframe))
        .await
        .map_err(&status)?
        .ok_or_else(|| {
            Error::NotFound(format!("symbol {} is not listed", query.ticker.as_str()))
        })?;
    let mut response = pb::GetBarsResponse {
        symbol: series.symbol.clone(),
        timeframe: query.timeframe.into(),
        adjustment: pb::Adjustment::Raw.into(),
        ..Default::default()
    };
    let Some(source) = series.source else {
        return Ok(response);
    };
    let rows = store::bars::page(pool, query, time_zone(&series.exchange_mic), source)
        .await
        .map_err(&status)?;
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
            symbol: series.symbol.clone(),
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
