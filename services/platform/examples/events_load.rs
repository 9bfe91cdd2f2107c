//! Load test of the event backbone: outbox → relay → Pub/Sub (emulator) → consumer.
//!
//! Run through `scripts/bench-events`, which starts PostgreSQL and the emulator:
//!
//! ```text
//! events_load rate <events/s> <seconds>   constant offered rate; end-to-end latency
//! events_load burst <events>              relay and consumer throughput on a backlog
//! ```
//!
//! End-to-end latency is from the producer's transaction start (the time written into the
//! event) to the consumer's handler, which records it in the handler's own transaction.
//! Producers commit one transaction every 10 ms holding that tick's events, over 100 ordering
//! keys (symbols).

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use mirai_platform::config::DatabaseConfig;
use mirai_platform::events::Envelope;
use mirai_platform::events::consumer::{Consumer, ConsumerMetrics, ConsumerSettings};
use mirai_platform::events::outbox::{self, Relay, RelayMetrics, RelaySettings};
use mirai_platform::events::pubsub::{self, PubSubConfig};
use mirai_platform::events::topology::{self, DeliveryPolicy, SubscriptionSpec, topics};
use mirai_platform::telemetry::Metrics;
use mirai_platform::testing::TestDatabase;
use mirai_proto::events::v1::SymbolListed;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

const SUBSCRIPTION: SubscriptionSpec = SubscriptionSpec {
    name: "analytics.stock-events",
    topic: topics::STOCK,
};

fn micros_now() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// Records the end-to-end latency of each event.
fn record<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: SymbolListed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let sent: i64 = event.name.parse()?;
        sqlx::query("INSERT INTO bench_seen (latency_us) VALUES ($1)")
            .bind(micros_now() - sent)
            .execute(tx)
            .await?;
        Ok(())
    })
}

struct Bench {
    config: PubSubConfig,
    pool: PgPool,
    stop: CancellationToken,
    _db: TestDatabase,
}

impl Bench {
    async fn setup() -> Self {
        let config = PubSubConfig::for_tests();
        topology::provision(&config, &[SUBSCRIPTION], DeliveryPolicy::default())
            .await
            .expect("provision");
        let db = TestDatabase::create("bench").await;
        let mut database = DatabaseConfig::with_url(db.url());
        database.max_connections = 40;
        let pool = mirai_platform::db::connect(&database).await.unwrap();
        mirai_platform::db::migrate(&pool, &sqlx::migrate::Migrator::DEFAULT)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE bench_seen (id BIGINT GENERATED ALWAYS AS IDENTITY, latency_us BIGINT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        Self {
            config,
            pool,
            stop: CancellationToken::new(),
            _db: db,
        }
    }

    async fn start_relay(&self) {
        let base = pubsub::publisher(&self.config).await.unwrap();
        let relay = Relay::new(
            self.pool.clone(),
            self.config.clone(),
            base,
            RelaySettings::default(),
            RelayMetrics::register(&Metrics::new()),
        );
        tokio::spawn(relay.run(self.stop.clone()));
    }

    async fn start_consumer(&self) {
        let consumer = Consumer::new(
            self.pool.clone(),
            &self.config,
            SUBSCRIPTION.name,
            ConsumerSettings::default(),
            ConsumerMetrics::register(&Metrics::new()),
        )
        .on::<SymbolListed, _>("bench.record", record);
        let subscriber = pubsub::subscriber(&self.config).await.unwrap();
        let publisher = pubsub::publisher(&self.config).await.unwrap();
        tokio::spawn(consumer.run(subscriber, publisher, self.stop.clone()));
    }

    async fn enqueue(&self, first: u64, count: u64) {
        let mut tx = self.pool.begin().await.unwrap();
        let sent = micros_now().to_string();
        for n in first..first + count {
            let event = SymbolListed {
                symbol: format!("S{:03}", n % 100),
                name: sent.clone(),
                ..Default::default()
            };
            outbox::enqueue(&mut tx, "bench", &event, None)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn seen(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM bench_seen")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn pending(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until `target` events were handled (or 120 s pass); returns the count.
    async fn drain(&self, target: i64) -> i64 {
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            let seen = self.seen().await;
            if seen >= target || Instant::now() > give_up {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn latencies(&self) -> (f64, f64, f64) {
        sqlx::query_as(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_us) / 1000.0,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_us) / 1000.0,
                    max(latency_us)::float8 / 1000.0
             FROM bench_seen",
        )
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

async fn constant_rate(rate: u64, seconds: u64) {
    let bench = Bench::setup().await;
    bench.start_relay().await;
    bench.start_consumer().await;
    let ticks = seconds * 100;
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sent = 0u64;
    for tick in 0..ticks {
        interval.tick().await;
        // Spread the rate evenly: after tick t, rate·(t+1)/100 events in total.
        let due = rate * (tick + 1) / 100;
        bench.enqueue(sent, due - sent).await;
        sent = due;
    }
    let offered_for = started.elapsed();
    let seen = bench.drain(sent as i64).await;
    let all_in = started.elapsed();
    let (p50, p99, max) = bench.latencies().await;
    println!(
        "rate {rate}/s for {seconds} s: offered {sent} in {:.1} s, delivered {seen} ({:.0}/s over {:.1} s), latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        offered_for.as_secs_f64(),
        seen as f64 / all_in.as_secs_f64(),
        all_in.as_secs_f64(),
    );
    bench.stop.cancel();
}

async fn burst(events: u64) {
    let bench = Bench::setup().await;
    for first in (0..events).step_by(1000) {
        bench.enqueue(first, 1000.min(events - first)).await;
    }
    let started = Instant::now();
    bench.start_relay().await;
    while bench.pending().await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relay = started.elapsed();
    let started = Instant::now();
    bench.start_consumer().await;
    let seen = bench.drain(events as i64).await;
    let consumer = started.elapsed();
    println!(
        "burst {events}: relay published {:.0}/s ({:.1} s); one consumer handled {seen} at {:.0}/s ({:.1} s)",
        events as f64 / relay.as_secs_f64(),
        relay.as_secs_f64(),
        seen as f64 / consumer.as_secs_f64(),
        consumer.as_secs_f64(),
    );
    bench.stop.cancel();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            panic!("usage: events_load rate <events/s> <seconds> | burst <events>")
        })
    };
    match args.first().map(String::as_str) {
        Some("rate") => constant_rate(number(1), number(2)).await,
        Some("burst") => burst(number(1)).await,
        _ => panic!("usage: events_load rate <events/s> <seconds> | burst <events>"),
    }
}
