//! Data freshness: how old the newest stored bar of each tracked symbol is.
//!
//! `mirai_data_newest_bar_age_seconds{symbol, interval}` is set every [`SAMPLE_INTERVAL`] for
//! each tracked symbol (one with a tracking reference) and each stored interval (`1Min`, the
//! live feed's; `1Day`, the imports' and the session close's): seconds from the end of its
//! newest bar to now. Tracked symbols are few (the tracking capacity bounds them), so the
//! labels stay bounded; a symbol that stops being tracked loses its series. A tracked symbol
//! without any bar of an interval has no series for it. The `MiraiTrackedSymbolBarsStale`
//! alert reads it.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use mirai_platform::telemetry::Metrics;
use mirai_proto::stock::v1 as pb;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::store;

/// How often the ages are read from the database.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(30);

/// The intervals bars are stored in (coarser ones are aggregated from these on read).
const STORED: [(pb::Timeframe, &str); 2] = [
    (pb::Timeframe::OneMinute, "1Min"),
    (pb::Timeframe::OneDay, "1Day"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgeLabels {
    symbol: String,
    interval: &'static str,
}

/// The freshness gauge and the series it set last time (to remove untracked symbols).
pub struct Freshness {
    pool: PgPool,
    ages: Family<AgeLabels, Gauge<f64, AtomicU64>>,
    reported: Mutex<HashSet<AgeLabels>>,
}

impl Freshness {
    pub fn register(pool: PgPool, metrics: &Metrics) -> Self {
        Self {
            pool,
            ages: metrics.register(
                "data_newest_bar_age_seconds",
                "Seconds since the end of the newest stored bar of a tracked symbol, by symbol \
                 and interval (1Min, 1Day).",
                Family::default(),
            ),
            reported: Mutex::default(),
        }
    }

    /// Reads the newest bar of every tracked symbol and interval and sets the gauges.
    pub async fn sample(&self) -> Result<(), sqlx::Error> {
        let timeframes: Vec<i16> = STORED.iter().map(|(t, _)| *t as i16).collect();
        let rows = store::freshness::newest_bar_ages(&self.pool, &timeframes).await?;

        let mut now_reported = HashSet::with_capacity(rows.len());
        for (symbol, timeframe, age) in rows {
            let Some((_, interval)) = STORED.iter().find(|(t, _)| *t as i16 == timeframe) else {
                continue;
            };
            let labels = AgeLabels { symbol, interval };
            self.ages.get_or_create(&labels).set(age);
            now_reported.insert(labels);
        }
        let mut reported = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for gone in reported.difference(&now_reported) {
            self.ages.remove(gone);
        }
        *reported = now_reported;
        Ok(())
    }

    /// Samples every [`SAMPLE_INTERVAL`] until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(error) = self.sample().await {
                        tracing::warn!(message = "Reading bar freshness failed.", %error);
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    async fn bar(pool: &PgPool, symbol: &str, timeframe: pb::Timeframe, ended_ago: &str) {
        sqlx::query(
            "INSERT INTO bars (symbol, timeframe, start_at, end_at, open, high, low, close,
                               volume, adjustment, source)
             VALUES ($1, $2, now() - $3::interval - interval '1 minute', now() - $3::interval,
                     1, 1, 1, 1, 1, 1, 'test')",
        )
        .bind(symbol)
        .bind(timeframe as i16)
        .bind(ended_ago)
        .execute(pool)
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn ages_are_reported_for_tracked_symbols_only_and_dropped_when_untracked() {
        let (_db, pool) = crate::test_db::migrated("freshness").await;
        for (symbol, references) in [("ACME", 1), ("IDLE", 0)] {
            sqlx::query(
                "INSERT INTO symbols (symbol, name, exchange_mic, currency, asset_type,
                                      reference_count)
                 VALUES ($1, $1, 'XNAS', 'USD', 'equity', $2)",
            )
            .bind(symbol)
            .bind(references)
            .execute(&pool)
            .await
            .unwrap();
        }
        bar(&pool, "ACME", pb::Timeframe::OneMinute, "10 minutes").await;
        bar(&pool, "ACME", pb::Timeframe::OneMinute, "2 hours").await;
        bar(&pool, "IDLE", pb::Timeframe::OneMinute, "1 minute").await;

        let metrics = Metrics::new();
        let freshness = Freshness::register(pool.clone(), &metrics);
        freshness.sample().await.unwrap();
        let text = metrics.encode();
        let acme = line(
            &text,
            r#"mirai_data_newest_bar_age_seconds{symbol="ACME",interval="1Min"} "#,
        )
        .unwrap_or_else(|| panic!("{text}"));
        let age: f64 = acme.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            (600.0..660.0).contains(&age),
            "the newest bar's age: {acme}"
        );
        assert!(!text.contains(r#"symbol="IDLE""#), "untracked: {text}");
        assert!(
            !text.contains(r#"interval="1Day""#),
            "no daily bars: {text}"
        );

        sqlx::query("UPDATE symbols SET reference_count = 0")
            .execute(&pool)
            .await
            .unwrap();
        freshness.sample().await.unwrap();
        let text = metrics.encode();
        assert!(
            !text.contains(r#"symbol="ACME""#),
            "no longer tracked: {text}"
        );
        pool.close().await;
    }
}
