//! Latest quotes, served from memory.
//!
//! A symbol's quote is built from its two latest daily bars the first time it is asked for,
//! then kept current by ingestion (the replay feed updates it on every price it emits), so
//! lookups after the first never touch the database. Every update is also broadcast to the
//! live streams ([`Quotes::subscribe`]); a stream that falls more than [`STREAM_BUFFER`]
//! updates behind loses the oldest ones (counted), and never slows ingestion or other streams.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use mirai_platform::telemetry::{CacheCounter, CacheMetrics, Metrics};
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::PgPool;

use crate::store;

/// Updates buffered per stream before the oldest are dropped.
pub const STREAM_BUFFER: usize = 1024;

#[derive(Clone)]
pub struct Quotes {
    pool: PgPool,
    cache: Arc<RwLock<HashMap<String, pb::Quote>>>,
    updates: tokio::sync::broadcast::Sender<pb::Quote>,
    /// Lookups answered from memory (hit) or built from the database (miss).
    lookups: CacheCounter,
}

/// A quote from the latest bar (`day`) and the one before it.
pub fn quote(symbol: &str, day: pb::Bar, previous: Option<pb::Bar>, source: &str) -> pb::Quote {
    let previous_close = previous.as_ref().map_or(0.0, |b| b.close);
    let change = if previous.is_some() {
        day.close - previous_close
    } else {
        0.0
    };
    pb::Quote {
        symbol: symbol.to_owned(),
        last_price: day.close,
        last_time: day.end,
        previous_close,
        change,
        change_percent: if previous_close == 0.0 {
            0.0
        } else {
            change / previous_close * 100.0
        },
        day_bar: Some(day),
        previous_day_bar: previous,
        source: source.to_owned(),
        adjustment: pb::Adjustment::Raw.into(),
        updated_at: Some(mirai_platform::wire::timestamp(chrono::Utc::now())),
    }
}

impl Quotes {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            cache: Arc::default(),
            updates: tokio::sync::broadcast::Sender::new(STREAM_BUFFER),
            lookups: CacheMetrics::register(&Metrics::new()).cache("quotes"),
        }
    }

    /// Counts lookups in `metrics` as `mirai_cache_requests_total{cache="quotes"}`.
    pub fn with_metrics(mut self, metrics: &Metrics) -> Self {
        self.lookups = CacheMetrics::register(metrics).cache("quotes");
        self
    }

    /// The latest quote of `symbol`; `None` when it has no daily bars.
    pub async fn get(&self, symbol: &str) -> Result<Option<pb::Quote>, sqlx::Error> {
        if let Some(quote) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(symbol)
        {
            self.lookups.hit();
            return Ok(Some(quote.clone()));
        }
        self.lookups.miss();
        let days = store::quotes::latest_days(&self.pool, symbol).await?;
        let Some(latest) = days.first() else {
            return Ok(None);
        };
        let built = quote(
            symbol,
            latest.bar(symbol),
            days.get(1).map(|d| d.bar(symbol)),
            &latest.source,
        );
        // A concurrent update (live data) wins over what was read from the database.
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        Ok(Some(
            cache.entry(symbol.to_owned()).or_insert(built).clone(),
        ))
    }

    /// Replaces the cached quote and tells the live streams (ingestion calls this for every
    /// new price).
    pub fn update(&self, quote: pb::Quote) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(quote.symbol.clone(), quote.clone());
        // No receiver is not an error: nobody is streaming.
        let _ = self.updates.send(quote);
    }

    /// Every future update, of all symbols.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<pb::Quote> {
        self.updates.subscribe()
    }
}

/// The session date of an instant in a time zone.
fn day_of(ts: Option<&prost_types::Timestamp>, tz: chrono_tz::Tz) -> Option<chrono::NaiveDate> {
    ts.and_then(wire::datetime)
        .map(|at| at.with_timezone(&tz).date_naive())
}

/// The quote after a live bar closed: a daily bar replaces the day; an intraday bar extends
/// today's bar (or starts a new day, the old one becoming the previous session).
pub fn with_bar(
    current: Option<pb::Quote>,
    bar: &pb::Bar,
    source: &str,
    tz: chrono_tz::Tz,
) -> pb::Quote {
    let (day, previous) = (
        current.as_ref().and_then(|q| q.day_bar.clone()),
        current.as_ref().and_then(|q| q.previous_day_bar.clone()),
    );
    let same_day = day
        .as_ref()
        .is_some_and(|d| day_of(d.start.as_ref(), tz) == day_of(bar.start.as_ref(), tz));
    let daily = bar.timeframe == pb::Timeframe::OneDay as i32;
    let (new_day, new_previous) = match (daily, same_day, day) {
        (true, true, _) => (bar.clone(), previous),
        (true, false, day) => (bar.clone(), day),
        (false, true, Some(mut day)) => {
            day.high = day.high.max(bar.high);
            day.low = day.low.min(bar.low);
            day.close = bar.close;
            day.volume += bar.volume;
            day.end = bar.end;
            day.source_bar_count += 1;
            day.complete = false;
            day.vwap = None;
            day.trade_count = None;
            (day, previous)
        }
        (false, _, day) => (
            pb::Bar {
                timeframe: pb::Timeframe::OneDay.into(),
                source_bar_count: 1,
                complete: false,
                vwap: None,
                trade_count: None,
                ..bar.clone()
            },
            day,
        ),
    };
    quote(&bar.symbol, new_day, new_previous, source)
}

/// The quote after a trade at `price`: today's bar moves (or a new day starts).
pub fn with_trade(
    current: Option<pb::Quote>,
    symbol: &str,
    price: f64,
    at: chrono::DateTime<chrono::Utc>,
    source: &str,
    tz: chrono_tz::Tz,
) -> pb::Quote {
    let stamp = wire::timestamp(at);
    let day = current.as_ref().and_then(|q| q.day_bar.clone());
    let previous = current.as_ref().and_then(|q| q.previous_day_bar.clone());
    let same_day = day
        .as_ref()
        .is_some_and(|d| day_of(d.start.as_ref(), tz) == day_of(Some(&stamp), tz));
    let (new_day, new_previous) = match (same_day, day) {
        (true, Some(mut day)) => {
            day.high = day.high.max(price);
            day.low = day.low.min(price);
            day.close = price;
            day.end = Some(stamp);
            day.complete = false;
            (day, previous)
        }
        (_, day) => (
            pb::Bar {
                symbol: symbol.to_owned(),
                timeframe: pb::Timeframe::OneDay.into(),
                start: Some(stamp),
                end: Some(stamp),
                open: price,
                high: price,
                low: price,
                close: price,
                volume: 0.0,
                source_bar_count: 0,
                complete: false,
                ..Default::default()
            },
            day,
        ),
    };
    quote(symbol, new_day, new_previous, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lookups_count_as_cache_hits_once_a_quote_is_built() {
        let (_db, pool) = crate::test_db::with_acme("quotes_cache").await;
        sqlx::query(
            "INSERT INTO bars (symbol, timeframe, start_at, end_at, open, high, low, close,
                               volume, adjustment, source)
             VALUES ('ACME', $1, '2026-12-03T14:30:00Z', '2026-12-03T21:00:00Z',
                     1, 2, 1, 2, 10, 1, 'test')",
        )
        .bind(pb::Timeframe::OneDay as i16)
        .execute(&pool)
        .await
        .unwrap();
        let metrics = Metrics::new();
        let quotes = Quotes::new(pool.clone()).with_metrics(&metrics);

        assert!(quotes.get("ACME").await.unwrap().is_some());
        assert!(quotes.get("ACME").await.unwrap().is_some());
        assert!(quotes.get("NONE").await.unwrap().is_none());

        let text = metrics.encode();
        for line in [
            r#"mirai_cache_requests_total{cache="quotes",result="hit"} 1"#,
            r#"mirai_cache_requests_total{cache="quotes",result="miss"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        pool.close().await;
    }
}
