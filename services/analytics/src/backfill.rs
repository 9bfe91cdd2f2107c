//! Back-filling the bar read model from the stock-data service (`GetBars`, paged).
//!
//! On start the service catches up every symbol it or stock-data knows, each from its newest
//! stored bar on (that bar is re-read, so a revision of it arrives too); the `Backfill` RPC
//! re-reads one symbol over any range. Both upsert through the same idempotent statement as
//! the event handler, so they can overlap with live events in any order.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::Utc;
use mirai_platform::grpc::client::UpstreamChannel;
use mirai_platform::wire;
use mirai_proto::stock::v1 as stock;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::domain::{Bar, Range, Symbol, Timeframe};
use crate::error::{Error, Result};
use crate::store::bars::{self, Applied, Provenance};

/// What one backfill did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub fetched: u64,
    pub applied: Applied,
    pub first: Option<chrono::DateTime<Utc>>,
    pub last: Option<chrono::DateTime<Utc>>,
    pub elapsed: Duration,
}

/// A client of the stock-data service.
#[derive(Clone)]
pub struct StockData {
    client: StockDataServiceClient<UpstreamChannel>,
    /// Bars per `GetBars` page.
    page: u32,
}

impl StockData {
    /// A client over `channel` (lazily connecting: the service starts even when stock-data is
    /// not up yet).
    pub fn new(channel: UpstreamChannel, page: u32) -> Self {
        Self {
            client: StockDataServiceClient::new(channel),
            page,
        }
    }

    /// Reads `symbol`'s bars in `range` from stock-data into the read model, page by page.
    pub async fn backfill(
        &self,
        pool: &PgPool,
        symbol: &Symbol,
        timeframe: Timeframe,
        range: Range,
    ) -> Result<Outcome> {
        let started = Instant::now();
        let mut outcome = Outcome::default();
        let mut page_token = String::new();
        loop {
            let as_of = Utc::now();
            let page = self
                .client
                .clone()
                .get_bars(stock::GetBarsRequest {
                    symbol: symbol.as_str().to_owned(),
                    timeframe: timeframe.code(),
                    start: range.start.map(wire::timestamp),
                    end: range.end.map(wire::timestamp),
                    limit: self.page,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|status| Error::upstream("stock-data", &status))?
                .into_inner();
            let parsed = page
                .bars
                .iter()
                .map(Bar::from_wire)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Internal(format!("stock-data sent a bad bar: {e}")))?;
            outcome.fetched += parsed.len() as u64;
            if let Some(first) = parsed.first()
                && outcome.first.is_none()
            {
                outcome.first = Some(first.start);
            }
            if let Some(last) = parsed.last() {
                outcome.last = Some(last.start);
            }
            let mut tx = pool.begin().await?;
            let applied = bars::upsert(
                &mut tx,
                &parsed,
                &Provenance {
                    adjustment: page.adjustment,
                    source: page.source.clone(),
                    as_of,
                },
            )
            .await?;
            tx.commit().await?;
            outcome.applied.inserted += applied.inserted;
            outcome.applied.updated += applied.updated;
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        outcome.elapsed = started.elapsed();
        Ok(outcome)
    }

    /// Every active symbol stock-data lists and every tracked one, by ticker.
    pub async fn symbols(&self) -> Result<BTreeSet<String>> {
        let mut symbols = BTreeSet::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .search_symbols(stock::SearchSymbolsRequest {
                    page_size: 100,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|status| Error::upstream("stock-data", &status))?
                .into_inner();
            symbols.extend(page.symbols.into_iter().map(|s| s.symbol));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .clone()
                .list_tracked_symbols(stock::ListTrackedSymbolsRequest {
                    page_size: 1000,
                    page_token: page_token.clone(),
                })
                .await
                .map_err(|status| Error::upstream("stock-data", &status))?
                .into_inner();
            symbols.extend(page.symbols.into_iter().map(|s| s.symbol));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(symbols)
    }
}

/// The start-up catch-up: daily bars of every symbol stock-data or the read model knows,
/// each from its newest stored bar on. Listing stock-data's symbols is retried (1 s doubling
/// to 30 s) until it answers, since services start in any order; a failure on one symbol is
/// logged and the symbol skipped (the read model then lags until events or a `Backfill` call
/// fill it); stops early on shutdown.
pub async fn catch_up(stock_data: StockData, pool: PgPool, stop: CancellationToken) {
    let mut delay = Duration::from_secs(1);
    let mut symbols = loop {
        match stock_data.symbols().await {
            Ok(symbols) => break symbols,
            Err(error) => {
                tracing::warn!(
                    message = "Start-up backfill could not list stock-data's symbols; retrying.",
                    %error,
                    retry_in_s = delay.as_secs()
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    };
    match bars::known_symbols(&pool).await {
        Ok(known) => symbols.extend(known),
        Err(error) => {
            tracing::warn!(message = "Start-up backfill could not read the read model.", %error)
        }
    }
    let (mut done, mut inserted, mut updated) = (0u64, 0u64, 0u64);
    for raw in symbols {
        if stop.is_cancelled() {
            return;
        }
        let Ok(symbol) = Symbol::parse("symbol", &raw) else {
            continue;
        };
        let from = match bars::last_start(&pool, &symbol, Timeframe::DAY).await {
            Ok(from) => from,
            Err(error) => {
                tracing::warn!(message = "Start-up backfill failed.", %symbol, %error);
                continue;
            }
        };
        let range = Range {
            start: from,
            end: None,
        };
        let work = stock_data.backfill(&pool, &symbol, Timeframe::DAY, range);
        let result = tokio::select! {
            () = stop.cancelled() => return,
            result = work => result,
        };
        match result {
            Ok(outcome) => {
                done += 1;
                inserted += outcome.applied.inserted;
                updated += outcome.applied.updated;
            }
            Err(Error::NotFound(_)) => {}
            Err(error) => tracing::warn!(message = "Start-up backfill failed.", %symbol, %error),
        }
    }
    tracing::info!(
        message = "Start-up backfill done.",
        symbols = done,
        inserted,
        updated
    );
}
