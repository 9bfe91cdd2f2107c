//! The floor under `stream_latency`: the same price updates (rate, 500 ordering keys, the same
//! publisher) through the Pub/Sub emulator to a streaming pull with the consumers' settings
//! (two streams, ordered subscription), acknowledged on arrival, no database. Latency = arrival
//! minus the trade time set when the update is published.
//!
//! ```text
//! PUBSUB_EMULATOR_HOST=127.0.0.1:8085 GOOGLE_CLOUD_PROJECT=mirai-test \
//!   cargo run --release -p mirai-notification --example pubsub_latency -- 1000 30
//! ```
//! Arguments: updates per second, seconds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use google_cloud_pubsub::model::Message;
use mirai_platform::events::pubsub::{self, PubSubConfig};
use mirai_platform::events::topology::{self, DeliveryPolicy, SubscriptionSpec, topics};
use mirai_platform::events::{Envelope, Event as _};
use mirai_proto::events::v1 as ev;
use prost::Message as _;

const SYMBOLS: usize = 500;
const SUBSCRIPTION: SubscriptionSpec = SubscriptionSpec {
    name: "notification.stock-events",
    topic: topics::STOCK,
};

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
    let config = PubSubConfig::for_tests();
    topology::provision(&config, &[SUBSCRIPTION], DeliveryPolicy::default()).await?;

    let latencies: Arc<Mutex<Vec<f64>>> = Arc::default();
    let subscriber = pubsub::subscriber(&config).await?;
    for _ in 0..2 {
        let mut stream = subscriber
            .subscribe(config.subscription_path(SUBSCRIPTION.name))
            .set_max_outstanding_messages(1000)
            .build();
        let latencies = latencies.clone();
        tokio::spawn(async move {
            while let Some(Ok((message, ack))) = stream.next().await {
                ack.ack();
                if let Ok(e) = ev::PriceUpdated::decode(message.data.as_ref())
                    && let Some(at) = e
                        .price_time
                        .as_ref()
                        .and_then(mirai_platform::wire::datetime)
                {
                    let ms =
                        (chrono::Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1000.0;
                    latencies.lock().unwrap().push(ms);
                }
            }
        });
    }

    let publisher = pubsub::publisher(&config)
        .await?
        .publisher(config.topic_path(topics::STOCK))
        .build();
    let total = rate * seconds;
    let started = Instant::now();
    let mut pending = Vec::new();
    for k in 0..total {
        let due = started + Duration::from_secs_f64(k as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let s = (k as usize) % SYMBOLS;
        let event = ev::PriceUpdated {
            symbol: format!("S{s:04}"),
            price: 100.0,
            price_time: Some(mirai_platform::wire::timestamp(chrono::Utc::now())),
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
    let give_up = Instant::now() + Duration::from_secs(60);
    while (latencies.lock().unwrap().len() as u64) < total && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        l.get(((l.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{total} updates published at {rate}/s, {} received; publish → streaming pull latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        l.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}
