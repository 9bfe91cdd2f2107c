//! Price update → live in-app notification latency through the emulator: 10,000 active
//! crossing alerts over 500 symbols (20 levels each, 50 users with a stream open each), price
//! updates published at a fixed rate (default 1,000/s) as random walks through the levels.
//! Latency = arrival on the user's `StreamNotifications` minus the update's trade time (set
//! when it is published), so it covers Pub/Sub, the consumer, the evaluation transaction,
//! LISTEN/NOTIFY and the stream.
//!
//! ```text
//! MIRAI_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 GOOGLE_CLOUD_PROJECT=mirai-test \
//!   cargo run --release -p mirai-notification --example stream_latency -- 1000 30
//! ```
//! Arguments: updates per second, seconds measured, and seconds of warm-up at the same rate
//! before them (default 0; their notifications are not counted). Besides the quantiles it
//! prints each second's p50/p99 by publish time, so a start-up tail shows as such.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use google_cloud_pubsub::model::Message;
use mirai_notification::config::Config;
use mirai_notification::domain::condition::Condition;
use mirai_platform::auth::Role;
use mirai_platform::events::topology::topics;
use mirai_platform::events::{Envelope, Event as _, pubsub};
use mirai_platform::testing::TestDatabase;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use mirai_proto::notification::v1::notification_service_client::NotificationServiceClient;
use prost::Message as _;
use rand::Rng as _;
use uuid::Uuid;

const SYMBOLS: usize = 500;
const PER_SYMBOL: usize = 20;
const USERS: usize = 50;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rate: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let seconds: u64 = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let warmup: u64 = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let db = TestDatabase::create("notification_bench").await;
    let mut config = Config::for_tests(db.url());
    config.service.database.max_connections = 40;
    config.service.telemetry.log_filter = "warn".into();
    // Build once to migrate, insert the alerts, then start for real (the index loads them).
    drop(mirai_notification::startup::build_with(&config).await?);
    let pool = sqlx::PgPool::connect(db.url()).await?;
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    let mut tx = pool.begin().await?;
    for s in 0..SYMBOLS {
        for i in 0..PER_SYMBOL {
            let condition = Condition::parse(&pb::Condition {
                kind: Some(pb::condition::Kind::Crossing(pb::PriceLevel {
                    price: 90.5 + i as f64,
                })),
                hysteresis_percent: 0.0,
            })?;
            sqlx::query(
                "INSERT INTO alerts (alert_id, user_id, symbol, condition, frequency, bar_timeframe,
                    cooldown_secs, channels, status, activated_at)
                 VALUES ($1, $2, $3, $4, 4, 6, 60, '{1}', 'ACTIVE', now())",
            )
            .bind(Uuid::now_v7())
            .bind(users[(s * PER_SYMBOL + i) % USERS])
            .bind(format!("S{s:04}"))
            .bind(condition.to_proto().encode_to_vec())
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    let app = mirai_notification::startup::build_with(&config).await?;
    println!("index: {} alerts", app.context.index.len());
    let addr = app.grpc_addr();
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.service.run_until_stopped(stop.clone()));

    // Per notification: the second of the run its update was published in, the total, and
    // the part up to the start of the transaction that stored it (its `created_at`: Pub/Sub
    // delivery and queueing in the consumer).
    let latencies: Arc<Mutex<Vec<(i64, f64, f64)>>> = Arc::default();
    let started_wall = chrono::Utc::now();
    let client = NotificationServiceClient::connect(format!("http://{addr}")).await?;
    for user in &users {
        let request = mirai_platform::testing::request_as(
            user,
            &[Role::User],
            pb::StreamNotificationsRequest {
                user_id: user.to_string(),
                ..Default::default()
            },
        );
        let mut stream = client
            .clone()
            .stream_notifications(request)
            .await?
            .into_inner();
        let latencies = latencies.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Some(n) = message.notification else {
                    continue;
                };
                if let Some(at) = n.data.get("observed_at")
                    && let Ok(at) = chrono::DateTime::parse_from_rfc3339(at)
                {
                    let ms =
                        |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    let total = ms(chrono::Utc::now() - at.to_utc());
                    let to_tx = n
                        .created_at
                        .as_ref()
                        .and_then(mirai_platform::wire::datetime)
                        .map_or(f64::NAN, |c| ms(c - at.to_utc()));
                    let second = (at.to_utc() - started_wall)
                        .num_milliseconds()
                        .div_euclid(1000);
                    latencies.lock().unwrap().push((second, total, to_tx));
                }
            }
        });
    }

    let publisher = pubsub::publisher(&config.service.pubsub)
        .await?
        .publisher(config.service.pubsub.topic_path(topics::STOCK))
        .build();
    let mut prices = vec![100.0f64; SYMBOLS];
    let mut rng = rand::rng();
    let total = rate * (warmup + seconds);
    let started = Instant::now();
    let mut pending = Vec::new();
    for k in 0..total {
        let due = started + Duration::from_secs_f64(k as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let s = (k as usize) % SYMBOLS;
        prices[s] = (prices[s] + rng.random_range(-0.6..0.6)).clamp(89.0, 111.0);
        let event = ev::PriceUpdated {
            symbol: format!("S{s:04}"),
            price: prices[s],
            price_time: Some(mirai_platform::wire::timestamp(chrono::Utc::now())),
            interval_high: prices[s],
            interval_low: prices[s],
            coalesced: 1,
            source: "bench".into(),
            ..Default::default()
        };
        let envelope = Envelope::new("stock-data", &event, None);
        pending.push(
            publisher.publish(
                Message::new()
                    .set_data(event.encode_to_vec())
                    .set_attributes(envelope.to_attributes())
                    .set_ordering_key(event.subject()),
            ),
        );
        if pending.len() >= 200 {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending.drain(..) {
        p.await?;
    }
    let published_in = started.elapsed();
    // Drain: wait until every update went through the consumer.
    let drain_started = Instant::now();
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM processed_events WHERE handler = 'evaluate.price-updated'",
        )
        .fetch_one(&pool)
        .await?;
        if done as u64 >= total || drain_started.elapsed() > Duration::from_secs(300) {
            println!("processed {done} of {total} updates");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_done = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = latencies.lock().unwrap().clone();
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let quantile = |v: &[f64], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    for second in 0..(warmup + seconds) as i64 {
        let l = sorted(all.iter().filter(|p| p.0 == second).map(|p| p.1).collect());
        println!(
            "  second {second:>3}{}: {:>5} notifications, p50 {:>7.1} ms, p99 {:>7.1} ms",
            if second < warmup as i64 {
                " (warm-up)"
            } else {
                ""
            },
            l.len(),
            quantile(&l, 0.5),
            quantile(&l, 0.99),
        );
    }
    let pairs: Vec<(f64, f64)> = all
        .iter()
        .filter(|p| p.0 >= warmup as i64)
        .map(|p| (p.1, p.2))
        .collect();
    let l = sorted(pairs.iter().map(|p| p.0).collect());
    let to_tx = sorted(pairs.iter().map(|p| p.1).collect());
    let after_tx = sorted(pairs.iter().map(|p| p.0 - p.1).collect());
    let q = |p: f64| quantile(&l, p);
    println!(
        "{total} updates ({warmup} s of warm-up) published in {:.1} s ({:.0}/s), consumed by {:.1} s; {} notifications streamed after the warm-up; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        published_in.as_secs_f64(),
        total as f64 / published_in.as_secs_f64(),
        all_done.as_secs_f64(),
        l.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        l.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "  of which up to the storing transaction's start: p50 {:.1} ms, p99 {:.1} ms; from it to the stream: p50 {:.1} ms, p99 {:.1} ms",
        quantile(&to_tx, 0.5),
        quantile(&to_tx, 0.99),
        quantile(&after_tx, 0.5),
        quantile(&after_tx, 0.99),
    );
    stop.cancel();
    let _ = running.await;
    Ok(())
}
