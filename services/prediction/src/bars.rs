//! Daily bars from the stock-data service, cached per symbol.
//!
//! Two views per symbol: the **latest** series (requests forecast from it; refreshed by
//! `stock.bar.closed` and, after `MIRAI_BAR_CACHE_TTL`, by asking stock-data again — another
//! replica may have consumed the event), and the **cursor** of the bar loop (the series as of
//! the last `stock.bar.closed` handled, which during a replay of history is far behind the
//! latest). A closed bar extends the cursor when it directly follows it (same previous close),
//! so a replay costs one `GetBars` at its start, not one per bar. Feature rows are computed
//! once per bar, when it enters a series ([`Series`]).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mirai_platform::grpc::client::UpstreamChannel;
use mirai_platform::wire;
use mirai_proto::stock::v1 as stock;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;

use crate::domain::features::{Bar, BarError, Series};
use crate::domain::symbol::Symbol;
use crate::metrics::Metrics;

/// Why bars could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BarsError {
    /// stock-data does not know the symbol (or has no daily bars for it).
    #[error("no daily bars for {0}")]
    NotFound(Symbol),
    /// stock-data failed or could not be reached.
    #[error("stock-data: {0}")]
    Upstream(tonic::Status),
    /// A bar cannot be turned into features (e.g. zero volume).
    #[error("{symbol}: {error}")]
    Invalid { symbol: Symbol, error: BarError },
}

/// A symbol's series at one point in time.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub symbol: Symbol,
    pub series: Arc<Series>,
    /// Adjustment basis of the bars (`stock::Adjustment` as i32).
    pub adjustment: i32,
    fetched: Instant,
}

impl Snapshot {
    /// Start of the newest bar: the forecasts' `as_of`.
    pub fn as_of(&self) -> Option<DateTime<Utc>> {
        self.series.last().map(|b| b.start)
    }
}

/// The bar source and its caches.
pub struct BarSource {
    client: StockDataServiceClient<UpstreamChannel>,
    /// Bars kept per symbol: the longest window + 1, and at least 22 for the Gaussian
    /// baseline at the previous bar.
    capacity: usize,
    ttl: Duration,
    latest: RwLock<HashMap<Symbol, Snapshot>>,
    cursor: RwLock<HashMap<Symbol, Snapshot>>,
    /// One fetch per symbol at a time; concurrent misses wait for it.
    fetching: tokio::sync::Mutex<HashMap<Symbol, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Metrics,
}

impl BarSource {
    /// Bars read through `stock_data` (a [`mirai_platform::grpc::client::Client`]'s channel).
    pub fn new(
        stock_data: UpstreamChannel,
        capacity: usize,
        ttl: Duration,
        metrics: Metrics,
    ) -> Self {
        Self {
            client: StockDataServiceClient::new(stock_data),
            capacity: capacity.max(22),
            ttl,
            latest: RwLock::default(),
            cursor: RwLock::default(),
            fetching: tokio::sync::Mutex::default(),
            metrics,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn fresh(&self, symbol: &Symbol) -> Option<Snapshot> {
        let latest = self.latest.read().unwrap_or_else(PoisonError::into_inner);
        latest
            .get(symbol)
            .filter(|s| s.fetched.elapsed() < self.ttl)
            .cloned()
    }

    /// The latest bars of `symbol`, from the cache while fresh.
    pub async fn latest(&self, symbol: &Symbol) -> Result<Snapshot, BarsError> {
        if let Some(snapshot) = self.fresh(symbol) {
            self.metrics.cache("bars", true);
            return Ok(snapshot);
        }
        let gate = {
            let mut fetching = self.fetching.lock().await;
            fetching.entry(symbol.clone()).or_default().clone()
        };
        let _turn = gate.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(snapshot) = self.fresh(symbol) {
            self.metrics.cache("bars", true);
            return Ok(snapshot);
        }
        self.metrics.cache("bars", false);
        let snapshot = self.fetch(symbol, None).await?;
        self.offer_latest(&snapshot);
        Ok(snapshot)
    }

    /// The series ending exactly at `bar` (a bar that just closed; `previous_close` from the
    /// event). Extends the bar loop's cursor when `bar` follows it, else asks stock-data.
    pub async fn through(
        &self,
        symbol: &Symbol,
        bar: Bar,
        previous_close: Option<f64>,
        adjustment: i32,
    ) -> Result<Snapshot, BarsError> {
        let cursor = self
            .cursor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(symbol)
            .cloned();
        let extended = cursor.and_then(|c| {
            let last = c.series.last()?;
            if last.start == bar.start && last.close == bar.close {
                return Some(Ok(c)); // the same bar again (a redelivery)
            }
            let follows = last.start < bar.start
                && previous_close.is_some_and(|p| p == last.close)
                && c.adjustment == adjustment;
            follows.then(|| {
                let mut series = (*c.series).clone();
                series
                    .push(bar)
                    .map(|()| Snapshot {
                        symbol: symbol.clone(),
                        series: Arc::new(series),
                        adjustment,
                        fetched: Instant::now(),
                    })
                    .map_err(|error| BarsError::Invalid {
                        symbol: symbol.clone(),
                        error,
                    })
            })
        });
        let snapshot = match extended {
            Some(result) => result?,
            None => {
                // Bars whose start is before `end` (exclusive): up to and including `bar`.
                let end = bar.start + chrono::Duration::seconds(1);
                self.fetch(symbol, Some(end)).await?
            }
        };
        self.cursor
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(symbol.clone(), snapshot.clone());
        self.offer_latest(&snapshot);
        Ok(snapshot)
    }

    /// Makes `snapshot` the latest view unless a newer one is cached.
    fn offer_latest(&self, snapshot: &Snapshot) {
        let mut latest = self.latest.write().unwrap_or_else(PoisonError::into_inner);
        let newer_cached = latest
            .get(&snapshot.symbol)
            .is_some_and(|c| c.as_of() > snapshot.as_of());
        if !newer_cached {
            latest.insert(snapshot.symbol.clone(), snapshot.clone());
        }
    }

    /// Drops everything cached about `symbol` (delisted).
    pub fn forget(&self, symbol: &Symbol) {
        self.latest
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(symbol);
        self.cursor
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(symbol);
    }

    /// Puts a series in the latest cache as if fetched now (benchmarks, warm starts).
    pub fn prime(&self, symbol: Symbol, series: Series, adjustment: i32) {
        let snapshot = Snapshot {
            symbol,
            series: Arc::new(series),
            adjustment,
            fetched: Instant::now(),
        };
        self.offer_latest(&snapshot);
    }

    /// The last `capacity` daily bars of `symbol` starting before `end` (now when `None`).
    async fn fetch(
        &self,
        symbol: &Symbol,
        end: Option<DateTime<Utc>>,
    ) -> Result<Snapshot, BarsError> {
        let request = stock::GetBarsRequest {
            symbol: symbol.as_str().to_owned(),
            timeframe: stock::Timeframe::OneDay.into(),
            end: end.map(wire::timestamp),
            limit: self.capacity as u32,
            newest_first: true,
            ..Default::default()
        };
        let response = self
            .client
            .clone()
            .get_bars(request)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound => BarsError::NotFound(symbol.clone()),
                _ => BarsError::Upstream(status),
            })?
            .into_inner();
        if response.bars.is_empty() {
            return Err(BarsError::NotFound(symbol.clone()));
        }
        let mut bars = Vec::with_capacity(response.bars.len());
        for b in response.bars.iter().rev() {
            let start = b.start.as_ref().and_then(wire::datetime).ok_or_else(|| {
                BarsError::Upstream(tonic::Status::internal("bar without a start"))
            })?;
            bars.push(
                Bar::parse(start, b.open, b.high, b.low, b.close, b.volume).map_err(|error| {
                    BarsError::Invalid {
                        symbol: symbol.clone(),
                        error,
                    }
                })?,
            );
        }
        let series = Series::new(bars, self.capacity).map_err(|error| BarsError::Invalid {
            symbol: symbol.clone(),
            error,
        })?;
        Ok(Snapshot {
            symbol: symbol.clone(),
            series: Arc::new(series),
            adjustment: response.adjustment,
            fetched: Instant::now(),
        })
    }
}

/// The bar of a `stock.bar.closed` event, validated.
pub fn bar_of(bar: &stock::Bar) -> Result<Bar, String> {
    let start = bar
        .start
        .as_ref()
        .and_then(wire::datetime)
        .ok_or("bar without a start")?;
    Bar::parse(start, bar.open, bar.high, bar.low, bar.close, bar.volume).map_err(|e| e.to_string())
}
