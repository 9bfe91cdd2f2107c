//! The event backbone against real PostgreSQL and the real Pub/Sub emulator.

use std::time::Duration;

use futures::future::BoxFuture;
use google_cloud_pubsub::model::Message;
use mirai_platform::config::DatabaseConfig;
use mirai_platform::events::consumer::{
    Batching, Consumer, ConsumerMetrics, ConsumerSettings, Handler, dead_letter_attr,
};
use mirai_platform::events::outbox::{self, Relay, RelayMetrics, RelaySettings};
use mirai_platform::events::pubsub::{self, PubSubConfig};
use mirai_platform::events::topology::{self, DeliveryPolicy, SubscriptionSpec, topics};
use mirai_platform::events::{Envelope, Event};
use mirai_platform::telemetry::Metrics;
use mirai_platform::testing::TestDatabase;
use mirai_proto::events::v1::SymbolListed;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

const SUBSCRIPTION: SubscriptionSpec = SubscriptionSpec {
    name: "analytics.stock-events",
    topic: topics::STOCK,
};

struct Setup {
    config: PubSubConfig,
    pool: PgPool,
    metrics: Metrics,
    stop: CancellationToken,
    _db: TestDatabase,
}

/// A fresh database with the platform tables and a `seen` table, and a unique topic prefix
/// provisioned on the emulator (fast redelivery so dead-lettering takes seconds).
async fn setup() -> Setup {
    let config = PubSubConfig::for_tests();
    let policy = DeliveryPolicy {
        ack_deadline: Duration::from_secs(10),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        max_delivery_attempts: 5,
    };
    topology::provision(&config, &[SUBSCRIPTION], policy)
        .await
        .expect("provision");
    let db = TestDatabase::create("events").await;
    let pool = mirai_platform::db::connect(&DatabaseConfig::with_url(db.url()))
        .await
        .unwrap();
    mirai_platform::db::migrate(&pool, &sqlx::migrate::Migrator::DEFAULT)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE seen (id BIGINT GENERATED ALWAYS AS IDENTITY, symbol TEXT, name TEXT)",
    )
    .execute(&pool)
    .await
    .unwrap();
    Setup {
        config,
        pool,
        metrics: Metrics::new(),
        stop: CancellationToken::new(),
        _db: db,
    }
}

/// Records each event; fails (forever) for the symbol POISON.
struct Record;

impl Handler<SymbolListed> for Record {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _: &'a Envelope,
        event: SymbolListed,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            anyhow::ensure!(event.symbol != "POISON", "poison event");
            sqlx::query("INSERT INTO seen (symbol, name) VALUES ($1, $2)")
                .bind(&event.symbol)
                .bind(&event.name)
                .execute(tx)
                .await?;
            Ok(())
        })
    }
}

impl Setup {
    async fn relay(&self) -> Relay {
        let base = pubsub::publisher(&self.config).await.unwrap();
        Relay::new(
            self.pool.clone(),
            self.config.clone(),
            base,
            RelaySettings {
                poll_interval: Duration::from_millis(200),
                ..RelaySettings::default()
            },
            RelayMetrics::register(&Metrics::new()),
        )
    }

    async fn start_relay(&self) {
        tokio::spawn(self.relay().await.run(self.stop.clone()));
    }

    async fn start_consumer(&self) {
        self.start_consumer_with(None).await;
    }

    /// A consumer in batched mode (`Some`) or not.
    async fn start_consumer_with(&self, batching: Option<Batching>) {
        let mut consumer = Consumer::new(
            self.pool.clone(),
            &self.config,
            SUBSCRIPTION.name,
            ConsumerSettings {
                streams: 2,
                concurrency: 32,
                max_attempts: 3,
                ..ConsumerSettings::default()
            },
            ConsumerMetrics::register(&self.metrics),
        )
        .on::<SymbolListed, _>("test.record", Record);
        if let Some(batching) = batching {
            consumer = consumer.batched(batching);
        }
        let subscriber = pubsub::subscriber(&self.config).await.unwrap();
        let publisher = pubsub::publisher(&self.config).await.unwrap();
        tokio::spawn(consumer.run(subscriber, publisher, self.stop.clone()));
    }

    async fn enqueue(&self, symbol: &str, name: &str, commit: bool) {
        let mut tx = self.pool.begin().await.unwrap();
        let event = SymbolListed {
            symbol: symbol.into(),
            name: name.into(),
            ..Default::default()
        };
        outbox::enqueue(&mut tx, "stock-data", &event, None)
            .await
            .unwrap();
        if commit {
            tx.commit().await.unwrap();
        } else {
            tx.rollback().await.unwrap();
        }
    }

    async fn seen(&self, symbol: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM seen WHERE symbol = $1")
            .bind(symbol)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn wait_until(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
        while !check().await {
            assert!(
                tokio::time::Instant::now() < give_up,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn metric(&self, needle: &str) -> bool {
        self.metrics.encode().contains(needle)
    }

    /// The value of the consumer's `outcome` counter (0 when absent).
    fn outcome(&self, outcome: &str) -> u64 {
        let needle = format!(r#"outcome="{outcome}"}} "#);
        self.metrics
            .encode()
            .lines()
            .find_map(|l| {
                l.split_once(&needle)
                    .map(|(_, n)| n.trim().parse().unwrap())
            })
            .unwrap_or(0)
    }

    /// Publishes `SymbolListed { symbol, name }` straight to the topic with `key` as its
    /// ordering key, `copies` times with the same `ce-id`; returns that envelope.
    async fn publish(&self, symbol: &str, name: &str, key: &str, copies: usize) -> Envelope {
        let event = SymbolListed {
            symbol: symbol.into(),
            name: name.into(),
            ..Default::default()
        };
        let envelope = Envelope::new("test", &event, None);
        self.publish_as(&envelope, &event, key, copies).await;
        envelope
    }

    async fn publish_as(
        &self,
        envelope: &Envelope,
        event: &SymbolListed,
        key: &str,
        copies: usize,
    ) {
        let attributes = envelope.to_attributes();
        let base = pubsub::publisher(&self.config).await.unwrap();
        let publisher = base
            .publisher(self.config.topic_path(topics::STOCK))
            .build();
        for _ in 0..copies {
            publisher
                .publish(
                    Message::new()
                        .set_data(prost::Message::encode_to_vec(event))
                        .set_attributes(attributes.clone())
                        .set_ordering_key(key),
                )
                .await
                .unwrap();
        }
    }

    async fn seen_total(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM seen")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

/// One lane, so that messages queued together share a transaction.
const ONE_LANE: Batching = Batching {
    lanes: 1,
    max_batch: 64,
    max_outstanding: 1000,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_committed_event_is_delivered_and_a_rolled_back_one_is_not() {
    let s = setup().await;
    s.enqueue("AAPL", "Apple", true).await;
    s.enqueue("MSFT", "Microsoft", false).await;
    s.start_relay().await;
    s.start_consumer().await;
    s.wait_until("AAPL delivered", async || s.seen("AAPL").await == 1)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.seen("MSFT").await, 0);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the rolled-back event never reached the outbox");
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_republished_event_has_one_effect() {
    let s = setup().await;
    s.enqueue("AAPL", "Apple", true).await;
    let mut relay = s.relay().await;
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    // The relay "crashed" after publishing but before marking: the row is pending again and
    // goes out a second time with the same ce-id.
    sqlx::query("UPDATE outbox SET published_at = NULL")
        .execute(&s.pool)
        .await
        .unwrap();
    assert_eq!(relay.relay_once().await.unwrap(), 1);
    s.start_consumer().await;
    s.wait_until("duplicate skipped", async || {
        s.metric(r#"mirai_consumer_messages_total{subscription="analytics.stock-events",outcome="duplicate"} 1"#)
    })
    .await;
    assert_eq!(s.seen("AAPL").await, 1);
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_in_order_per_key_with_two_relays() {
    let s = setup().await;
    let keys: Vec<String> = (0..10).map(|k| format!("K{k}")).collect();
    let mut tx = s.pool.begin().await.unwrap();
    for n in 0..1000 {
        let event = SymbolListed {
            symbol: keys[n % 10].clone(),
            name: n.to_string(),
            ..Default::default()
        };
        outbox::enqueue(&mut tx, "stock-data", &event, None)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    s.start_relay().await;
    s.start_relay().await;
    s.start_consumer().await;
    s.wait_until("1000 events", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM seen")
            .fetch_one(&s.pool)
            .await
            .unwrap()
            == 1000
    })
    .await;
    for key in &keys {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM seen WHERE symbol = $1 ORDER BY id")
                .bind(key)
                .fetch_all(&s.pool)
                .await
                .unwrap();
        let numbers: Vec<usize> = names.iter().map(|n| n.parse().unwrap()).collect();
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, sorted, "key {key} arrived out of order");
        assert_eq!(numbers.len(), 100);
    }
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn poison_garbled_and_unknown_messages_do_not_stop_the_consumer() {
    let s = setup().await;
    s.start_consumer().await;
    s.enqueue("POISON", "always fails", true).await;
    s.start_relay().await;

    // A garbled payload and an unknown type, published directly.
    let base = pubsub::publisher(&s.config).await.unwrap();
    let publisher = base.publisher(s.config.topic_path(topics::STOCK)).build();
    let good = SymbolListed {
        symbol: "GOOD".into(),
        ..Default::default()
    };
    let mut garbled = Envelope::new("test", &good, None).to_attributes();
    garbled.insert("ce-subject".into(), "GARBLED".into());
    publisher
        .publish(
            Message::new()
                .set_data(vec![0xff, 0xff, 0xff])
                .set_attributes(garbled),
        )
        .await
        .unwrap();
    let mut unknown = Envelope::new("test", &good, None).to_attributes();
    unknown.insert("ce-type".into(), "mirai.something.else.v1".into());
    publisher
        .publish(Message::new().set_data(vec![1]).set_attributes(unknown))
        .await
        .unwrap();
    s.enqueue("GOOD", "fine", true).await;

    s.wait_until("GOOD processed", async || s.seen("GOOD").await == 1)
        .await;
    assert!(
        s.metric(r#"outcome="unknown_type"} 1"#),
        "{}",
        s.metrics.encode()
    );

    // Both bad messages fail 3 times (the consumer's limit), then wait on the dead-letter
    // subscription with the reason, the original attributes and payload.
    let dead = pubsub::subscriber(&s.config).await.unwrap();
    let mut stream = dead
        .subscribe(
            s.config
                .subscription_path(&topology::dead_letter_name(SUBSCRIPTION.name)),
        )
        .build();
    let mut reasons = std::collections::BTreeMap::new();
    while reasons.len() < 2 {
        let (message, ack) = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("dead letters arrive")
            .expect("stream open")
            .expect("message");
        ack.ack();
        assert_eq!(message.attributes[dead_letter_attr::ATTEMPTS], "3");
        reasons.insert(
            message.attributes["ce-subject"].clone(),
            message.attributes[dead_letter_attr::REASON].clone(),
        );
    }
    assert!(reasons["POISON"].contains("poison event"), "{reasons:?}");
    assert!(
        reasons["GARBLED"].contains("does not decode"),
        "{reasons:?}"
    );
    // The consumer counts a dead letter just after publishing it, so the count may trail the
    // arrival by a moment.
    s.wait_until("dead letters counted", async || {
        s.metric(r#"outcome="dead_lettered"} 2"#) && s.metric(r#"outcome="handler_failed"} 3"#)
    })
    .await;
    assert_eq!(s.seen("POISON").await, 0);
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_duplicates_have_one_effect() {
    let s = setup().await;
    // Every event twice with the same ce-id, published before the consumer starts so that
    // copies share batches; a third copy of E0 arrives after everything was handled.
    let mut first = None;
    for n in 0..40 {
        let envelope = s
            .publish(
                &format!("S{}", n % 8),
                &format!("E{n}"),
                &format!("S{}", n % 8),
                2,
            )
            .await;
        first.get_or_insert(envelope);
    }
    s.start_consumer_with(Some(ONE_LANE)).await;
    s.wait_until("40 events", async || s.seen_total().await == 40)
        .await;
    s.wait_until("40 duplicates", async || s.outcome("duplicate") == 40)
        .await;
    let e0 = SymbolListed {
        symbol: "S0".into(),
        name: "E0".into(),
        ..Default::default()
    };
    s.publish_as(&first.unwrap(), &e0, "S0", 1).await;
    s.wait_until("late duplicate", async || s.outcome("duplicate") == 41)
        .await;
    assert_eq!(s.seen_total().await, 40);
    let distinct: i64 = sqlx::query_scalar("SELECT count(DISTINCT name) FROM seen")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(distinct, 40);
    assert_eq!(s.outcome("acked"), 40);
    assert_eq!(s.outcome("batch_split"), 0);
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_event_in_a_batch_fails_alone_and_holds_back_only_its_key() {
    let s = setup().await;
    // Batch mates on other keys; on key K, POISON (always fails) and then AFTER.
    for n in 0..20 {
        s.publish(&format!("G{n}"), "good", &format!("G{n}"), 1)
            .await;
        if n == 10 {
            s.publish("POISON", "always fails", "K", 1).await;
            s.publish("AFTER", "behind the poison", "K", 1).await;
        }
    }
    s.start_consumer_with(Some(ONE_LANE)).await;
    s.wait_until("the good events", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM seen WHERE symbol LIKE 'G%'")
            .fetch_one(&s.pool)
            .await
            .unwrap()
            == 20
    })
    .await;
    // POISON fails 3 times (the limit) and is dead-lettered; only then does AFTER apply.
    s.wait_until("AFTER applied", async || s.seen("AFTER").await == 1)
        .await;
    s.wait_until("POISON dead-lettered", async || {
        s.outcome("dead_lettered") == 1
    })
    .await;
    let dead_lettered: bool = sqlx::query_scalar(
        "SELECT dead_lettered_at IS NOT NULL FROM consumer_failures WHERE attempts = 3",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert!(dead_lettered);
    // AFTER's row is the last: it did not overtake the poison.
    let last: String = sqlx::query_scalar("SELECT symbol FROM seen ORDER BY id DESC LIMIT 1")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(last, "AFTER");
    assert_eq!(s.seen("POISON").await, 0);
    assert_eq!(s.seen_total().await, 21, "every batch mate applied once");
    assert_eq!(s.outcome("handler_failed"), 3, "{}", s.metrics.encode());
    assert!(s.outcome("batch_split") >= 1, "{}", s.metrics.encode());
    assert!(s.outcome("deferred") >= 1, "{}", s.metrics.encode());
    s.stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_events_arrive_in_order_per_key() {
    let s = setup().await;
    let keys: Vec<String> = (0..10).map(|k| format!("K{k}")).collect();
    let mut tx = s.pool.begin().await.unwrap();
    for n in 0..1000 {
        let event = SymbolListed {
            symbol: keys[n % 10].clone(),
            name: n.to_string(),
            ..Default::default()
        };
        outbox::enqueue(&mut tx, "stock-data", &event, None)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    s.start_relay().await;
    s.start_consumer_with(Some(Batching {
        lanes: 3,
        max_batch: 16,
        max_outstanding: 100,
    }))
    .await;
    s.wait_until("1000 events", async || s.seen_total().await == 1000)
        .await;
    for key in &keys {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM seen WHERE symbol = $1 ORDER BY id")
                .bind(key)
                .fetch_all(&s.pool)
                .await
                .unwrap();
        let numbers: Vec<usize> = names.iter().map(|n| n.parse().unwrap()).collect();
        let mut sorted = numbers.clone();
        sorted.sort_unstable();
        assert_eq!(numbers, sorted, "key {key} arrived out of order");
        assert_eq!(numbers.len(), 100);
    }
    assert!(
        s.outcome("acked") == 1000 && s.outcome("batch_split") == 0,
        "{}",
        s.metrics.encode()
    );
    s.stop.cancel();
}

#[test]
fn event_types_and_topics_are_typed() {
    assert_eq!(SymbolListed::TYPE, "mirai.symbol.listed.v1");
    assert_eq!(SymbolListed::TOPIC, topics::STOCK);
}
