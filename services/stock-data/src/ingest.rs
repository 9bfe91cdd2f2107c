//! The live ingest path: every bar and price from a vendor feed goes through here.
//!
//! One transaction per bar: the symbol's row is locked (so a symbol's events commit in
//! order), the bar is stored (a bar older than the feed's latest is flagged `OUT_OF_ORDER`, a
//! changed re-delivery `VALUE_CHANGED`, an identical one changes nothing and emits nothing),
//! the quality checks run, and `stock.bar.closed` + `stock.price.updated` go to the outbox.
//! After the commit the in-memory quote is replaced and the quote streams are told.

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1::{self as pb, QualityFlag, Timeframe};
use sqlx::PgPool;

use crate::SERVICE;
use crate::bars_cache::BarsCache;
use crate::quality::{self, bit};
use crate::quotes::{self, Quotes};
use crate::store;

/// A closed bar from a feed.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveBar {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub vwap: Option<f64>,
    pub trade_count: Option<i64>,
}

/// What happened to a bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New,
    Changed,
    /// Already stored with the same values (e.g. the overlap of a backfill): no events.
    Unchanged,
    /// Not stored: the symbol is unknown or delisted.
    Refused(String),
}

/// The latest trade of a symbol and the range of the trades coalesced with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub symbol: String,
    pub price: f64,
    pub at: DateTime<Utc>,
    pub interval_high: f64,
    pub interval_low: f64,
    pub coalesced: u32,
}

#[derive(Clone)]
pub struct Ingest {
    pool: PgPool,
    quotes: Quotes,
    settings: quality::Settings,
    bars: BarsCache,
}

impl Ingest {
    pub fn new(pool: PgPool, quotes: Quotes, settings: quality::Settings) -> Self {
        Self {
            pool,
            quotes,
            settings,
            bars: BarsCache::default(),
        }
    }

    /// Retires `cache`'s pages of a symbol as soon as one of its bars is stored.
    pub fn with_bars_cache(mut self, cache: BarsCache) -> Self {
        self.bars = cache;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Stores one closed bar from `source` and emits its events (see the module docs).
    pub async fn bar(&self, bar: &LiveBar, source: &str) -> Result<Stored, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let listed = store::ingest::lock_symbol(&mut tx, &bar.symbol).await?;
        let Some((mic, asset_type, status)) = listed else {
            return Ok(Stored::Refused(format!("{} is not listed", bar.symbol)));
        };
        if status != "active" {
            return Ok(Stored::Refused(format!("{} is delisted", bar.symbol)));
        }
        let latest =
            store::ingest::newest_start(&mut tx, &bar.symbol, bar.timeframe, source).await?;
        let out_of_order = latest.is_some_and(|latest| latest > bar.start);
        let flags = if out_of_order {
            bit(QualityFlag::OutOfOrder)
        } else {
            0
        };
        let written = store::ingest::write_bar(&mut tx, bar, source, flags).await?;
        let Some(inserted) = written else {
            return Ok(Stored::Unchanged);
        };
        let series = quality::run::Series::new(&bar.symbol, bar.timeframe, &mic, &asset_type);
        let origin = quality::run::Origin {
            source,
            import_id: "",
        };
        quality::run::check(&mut tx, &self.settings, &series, &[bar.start], origin).await?;
        let stored_flags =
            store::ingest::flags(&mut tx, &bar.symbol, bar.timeframe, bar.start).await?;
        let previous_close =
            store::ingest::previous_close(&mut tx, &bar.symbol, bar.timeframe, bar.start).await?;
        let closed = pb::Bar {
            symbol: bar.symbol.clone(),
            timeframe: bar.timeframe.into(),
            start: Some(wire::timestamp(bar.start)),
            end: Some(wire::timestamp(bar.end)),
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
            vwap: bar.vwap,
            trade_count: bar.trade_count.map(|n| n.max(0) as u64),
            quality_flags: quality::flags_of(stored_flags).map(|f| f as i32).collect(),
            source_bar_count: 1,
            complete: true,
        };
        let quote = quotes::with_bar(
            self.quotes.get(&bar.symbol).await?,
            &closed,
            source,
            series.venue.time_zone,
        );
        outbox::enqueue(
            &mut tx,
            SERVICE,
            &ev::BarClosed {
                bar: Some(closed),
                adjustment: pb::Adjustment::Raw.into(),
                source: source.to_owned(),
                previous_close,
            },
            None,
        )
        .await?;
        let price = Price {
            symbol: bar.symbol.clone(),
            price: bar.close,
            at: bar.end,
            interval_high: bar.high,
            interval_low: bar.low,
            coalesced: 1,
        };
        outbox::enqueue(
            &mut tx,
            SERVICE,
            &price_updated(&quote, &price, source),
            None,
        )
        .await?;
        tx.commit().await?;
        self.bars.forget(&bar.symbol);
        self.quotes.update(quote);
        Ok(if inserted {
            Stored::New
        } else {
            Stored::Changed
        })
    }

    /// Emits one `stock.price.updated` per coalesced price, in one transaction, and updates
    /// the quotes. Prices of unknown symbols are dropped (logged by the caller's feed).
    pub async fn prices(&self, prices: &[Price], source: &str) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut updated = Vec::new();
        for price in prices {
            let mic = store::ingest::active_mic(&mut tx, &price.symbol).await?;
            let Some(mic) = mic else { continue };
            let tz = quality::run::venue(&mic).time_zone;
            let quote = quotes::with_trade(
                self.quotes.get(&price.symbol).await?,
                &price.symbol,
                price.price,
                price.at,
                source,
                tz,
            );
            outbox::enqueue(
                &mut tx,
                SERVICE,
                &price_updated(&quote, price, source),
                None,
            )
            .await?;
            updated.push(quote);
        }
        tx.commit().await?;
        for quote in updated {
            self.quotes.update(quote);
        }
        Ok(())
    }
}

fn price_updated(quote: &pb::Quote, price: &Price, source: &str) -> ev::PriceUpdated {
    let day = quote.day_bar.clone().unwrap_or_default();
    ev::PriceUpdated {
        symbol: price.symbol.clone(),
        price: price.price,
        price_time: Some(wire::timestamp(price.at)),
        previous_close: quote.previous_close,
        day_open: day.open,
        day_high: day.high,
        day_low: day.low,
        day_volume: day.volume,
        interval_high: price.interval_high,
        interval_low: price.interval_low,
        coalesced: price.coalesced,
        source: source.to_owned(),
    }
}
