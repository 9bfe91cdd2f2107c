//! The transactional outbox and its relay.
//!
//! [`enqueue`] writes the event in the caller's transaction, so the event exists if and only if
//! the state change committed. The [`Relay`] publishes committed rows and marks them published:
//!
//! - wake-up by `LISTEN mirai_outbox` (a trigger notifies at commit), polling as the fallback;
//! - ordering keys are claimed with transaction-scoped advisory locks, so several relays
//!   (replicas) never work on the same key at once, and rows of a key go out in `id` order;
//! - a failed publish stops that key (later rows wait) and retries with capped exponential
//!   backoff with full jitter; other keys are unaffected;
//! - a crash between publish and mark-published republishes the row with the same `ce-id`,
//!   which consumers deduplicate.
//!
//! Writers must lock the aggregate (e.g. `UPDATE` its row) before inserting its event, so that
//! two transactions on one aggregate commit in the order of their outbox ids.

use std::collections::HashMap;
use std::time::Duration;

use google_cloud_pubsub::client::{BasePublisher, Publisher};
use google_cloud_pubsub::model::Message;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use rand::Rng as _;
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::envelope::{Envelope, Event};
use super::pubsub::PubSubConfig;
use crate::telemetry::Metrics;

/// Writes `event` to the outbox inside the caller's transaction. Returns its `ce-id`.
pub async fn enqueue<E: Event>(
    tx: &mut PgConnection,
    service: &str,
    event: &E,
    correlation_id: Option<String>,
) -> Result<Uuid, sqlx::Error> {
    enqueue_on(tx, service, E::TOPIC, event, correlation_id).await
}

/// Like [`enqueue`], on an explicit topic (events several services publish, such as
/// `user.data.purged`, go on the publisher's own topic).
pub async fn enqueue_on<E: Event>(
    tx: &mut PgConnection,
    service: &str,
    topic: &str,
    event: &E,
    correlation_id: Option<String>,
) -> Result<Uuid, sqlx::Error> {
    let envelope = Envelope::new(service, event, correlation_id);
    let attributes = serde_json::to_value(envelope.to_attributes()).unwrap_or_default();
    sqlx::query!(
        "INSERT INTO outbox (event_id, topic, ordering_key, event_type, attributes, payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
        envelope.id,
        topic,
        &envelope.subject,
        E::TYPE,
        attributes,
        event.encode_to_vec(),
    )
    .execute(tx)
    .await?;
    Ok(envelope.id)
}

/// Writes an already-encoded message to the outbox inside the caller's transaction: for
/// payloads that are not internal protobuf events, such as the public JSON CloudEvents
/// (structured mode), whose attributes the caller sets itself. `event_id` must be unique.
pub async fn enqueue_raw(
    tx: &mut PgConnection,
    event_id: Uuid,
    topic: &str,
    ordering_key: &str,
    event_type: &str,
    attributes: &HashMap<String, String>,
    payload: &[u8],
) -> Result<(), sqlx::Error> {
    let attributes = serde_json::to_value(attributes).unwrap_or_default();
    sqlx::query!(
        "INSERT INTO outbox (event_id, topic, ordering_key, event_type, attributes, payload)
         VALUES ($1, $2, $3, $4, $5, $6)",
        event_id,
        topic,
        ordering_key,
        event_type,
        attributes,
        payload,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Events written to the outbox by one statement, in the order they were pushed (their `id`s
/// follow that order, so the relay publishes each key's rows as pushed): for writers that emit
/// many events per transaction, such as the replay feed. Writing is [`enqueue`]'s contract, once
/// for all the rows.
#[derive(Default)]
pub struct Batch {
    ids: Vec<Uuid>,
    topics: Vec<&'static str>,
    keys: Vec<String>,
    types: Vec<&'static str>,
    attributes: Vec<serde_json::Value>,
    payloads: Vec<Vec<u8>>,
}

impl Batch {
    /// Adds `event` (on its own topic); returns its `ce-id`.
    pub fn push<E: Event>(
        &mut self,
        service: &str,
        event: &E,
        correlation_id: Option<String>,
    ) -> Uuid {
        let envelope = Envelope::new(service, event, correlation_id);
        self.ids.push(envelope.id);
        self.topics.push(E::TOPIC);
        self.types.push(E::TYPE);
        self.attributes
            .push(serde_json::to_value(envelope.to_attributes()).unwrap_or_default());
        self.payloads.push(event.encode_to_vec());
        self.keys.push(envelope.subject);
        envelope.id
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Inserts every pushed event inside the caller's transaction.
    pub async fn write(self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "INSERT INTO outbox (event_id, topic, ordering_key, event_type, attributes, payload)
             SELECT event_id, topic, ordering_key, event_type, attributes, payload
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[])
                  WITH ORDINALITY AS e (event_id, topic, ordering_key, event_type, attributes,
                                        payload, n)
             ORDER BY n",
            &self.ids,
            &self.topics as &[&str],
            &self.keys,
            &self.types as &[&str],
            &self.attributes,
            &self.payloads,
        )
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// Relay tuning.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// Rows per claim (Pub/Sub accepts up to 1,000 messages per publish request).
    pub batch_size: i64,
    /// Fallback polling interval when no notification arrives.
    pub poll_interval: Duration,
    /// First retry delay after a failed publish; doubles per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Published outbox rows, inbox rows and failure counts older than this are deleted
    /// (default 8 days: above Pub/Sub's 7-day message retention).
    pub retention: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
            retention: Duration::from_secs(8 * 24 * 3600),
        }
    }
}

/// Full jitter: a random delay in `[0, min(max, base·2^attempt)]`.
pub fn backoff(settings: &RelaySettings, attempt: u32) -> Duration {
    let cap = settings
        .base_backoff
        .saturating_mul(2u32.saturating_pow(attempt.min(20)))
        .min(settings.max_backoff);
    Duration::from_secs_f64(rand::rng().random_range(0.0..=cap.as_secs_f64()))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

/// Outbox metrics.
#[derive(Clone)]
pub struct RelayMetrics {
    pending: Gauge,
    oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    published: Family<TopicLabels, Counter>,
    failures: Family<TopicLabels, Counter>,
    publish_seconds: Family<TopicLabels, Histogram>,
}

impl RelayMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            pending: metrics.register(
                "outbox_pending",
                "Outbox rows not yet published.",
                Gauge::default(),
            ),
            oldest_age: metrics.register(
                "outbox_oldest_pending_age_seconds",
                "Age of the oldest unpublished outbox row.",
                Gauge::default(),
            ),
            published: metrics.register(
                "outbox_published",
                "Events published, by topic.",
                Family::default(),
            ),
            failures: metrics.register(
                "outbox_publish_failures",
                "Failed publish attempts, by topic.",
                Family::default(),
            ),
            publish_seconds: metrics.register(
                "outbox_publish_seconds",
                "Time from handing a batch to Pub/Sub until it is acknowledged, by topic.",
                Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.001, 2.0, 14))
                }),
            ),
        }
    }
}

/// Publishes committed outbox rows to Pub/Sub.
pub struct Relay {
    pool: PgPool,
    config: PubSubConfig,
    base: BasePublisher,
    publishers: HashMap<String, Publisher>,
    settings: RelaySettings,
    metrics: RelayMetrics,
}

struct Row {
    id: i64,
    topic: String,
    ordering_key: String,
    attributes: HashMap<String, String>,
    payload: Vec<u8>,
    attempts: i32,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        config: PubSubConfig,
        base: BasePublisher,
        settings: RelaySettings,
        metrics: RelayMetrics,
    ) -> Self {
        Self {
            pool,
            config,
            base,
            publishers: HashMap::new(),
            settings,
            metrics,
        }
    }

    /// Runs until `shutdown`; the batch in flight is finished first.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut listener = crate::db::listen(&self.pool, "mirai_outbox").await;
        let mut last_prune = tokio::time::Instant::now();
        while !shutdown.is_cancelled() {
            let published = match self.relay_once().await {
                Ok(count) => count,
                Err(error) => {
                    tracing::warn!(message = "Outbox relay pass failed.", %error);
                    0
                }
            };
            self.observe_backlog().await;
            if last_prune.elapsed() > Duration::from_secs(600) {
                self.prune().await;
                last_prune = tokio::time::Instant::now();
            }
            if published as i64 >= self.settings.batch_size {
                continue; // more waiting
            }
            let wait = async {
                match listener.as_mut() {
                    Some(listener) => {
                        let _ = listener.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wait => {}
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
        for publisher in self.publishers.values() {
            publisher.flush().await;
        }
        tracing::info!(message = "Outbox relay stopped.");
    }

    fn publisher(&mut self, topic: &str) -> Publisher {
        self.publishers
            .entry(topic.to_owned())
            .or_insert_with(|| self.base.publisher(self.config.topic_path(topic)).build())
            .clone()
    }

    /// One claim–publish–mark cycle. Returns the number of rows published.
    pub async fn relay_once(&mut self) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // Keys whose oldest pending row is due, then only those this relay can lock.
        let keys: Vec<String> = sqlx::query_scalar!(
            r#"SELECT k AS "k!" FROM (
                 SELECT ordering_key AS k FROM (
                     SELECT DISTINCT ON (ordering_key) ordering_key, next_attempt_at
                     FROM outbox WHERE published_at IS NULL ORDER BY ordering_key, id
                 ) heads WHERE next_attempt_at <= now() LIMIT 256
             ) due
             WHERE pg_try_advisory_xact_lock(hashtextextended('mirai_outbox:' || k, 0))"#,
        )
        .fetch_all(&mut *tx)
        .await?;
        if keys.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let rows: Vec<Row> = sqlx::query!(
            "SELECT id, topic, ordering_key, attributes, payload, attempts FROM outbox
             WHERE published_at IS NULL AND ordering_key = ANY($1) ORDER BY id LIMIT $2",
            &keys,
            self.settings.batch_size,
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| Row {
            id: r.id,
            topic: r.topic,
            ordering_key: r.ordering_key,
            attributes: serde_json::from_value(r.attributes).unwrap_or_default(),
            payload: r.payload,
            attempts: r.attempts,
        })
        .collect();

        let started = std::time::Instant::now();
        let futures: Vec<_> = rows
            .iter()
            .map(|row| {
                let message = Message::new()
                    .set_data(row.payload.clone())
                    .set_attributes(row.attributes.clone())
                    .set_ordering_key(row.ordering_key.clone());
                self.publisher(&row.topic).publish(message)
            })
            .collect();
        let results = futures::future::join_all(futures).await;
        let elapsed = started.elapsed().as_secs_f64();

        let mut published = Vec::new();
        let mut stopped_keys: HashMap<&str, ()> = HashMap::new();
        for (row, result) in rows.iter().zip(results) {
            let labels = TopicLabels {
                topic: row.topic.clone(),
            };
            // Within an ordered key, nothing after a failure may be marked published.
            if !row.ordering_key.is_empty() && stopped_keys.contains_key(row.ordering_key.as_str())
            {
                continue;
            }
            match result {
                Ok(_) => {
                    published.push(row.id);
                    self.metrics.published.get_or_create(&labels).inc();
                    self.metrics
                        .publish_seconds
                        .get_or_create(&labels)
                        .observe(elapsed);
                }
                Err(error) => {
                    self.metrics.failures.get_or_create(&labels).inc();
                    let delay = backoff(&self.settings, row.attempts.max(0) as u32);
                    tracing::warn!(
                        message = "Outbox publish failed; will retry.",
                        %error,
                        topic = %row.topic,
                        ordering_key = %row.ordering_key,
                        attempt = row.attempts + 1,
                        retry_in_ms = delay.as_millis() as u64
                    );
                    sqlx::query!(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                         next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
                        row.id,
                        error.to_string(),
                        delay.as_secs_f64(),
                    )
                    .execute(&mut *tx)
                    .await?;
                    if !row.ordering_key.is_empty() {
                        stopped_keys.insert(row.ordering_key.as_str(), ());
                        self.publisher(&row.topic)
                            .resume_publish(row.ordering_key.clone());
                    }
                }
            }
        }
        sqlx::query!(
            "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1)",
            &published,
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(published.len())
    }

    async fn observe_backlog(&self) {
        let backlog: Result<(i64, Option<f64>), _> = sqlx::query!(
            r#"SELECT count(*) AS "pending!",
                      extract(epoch FROM now() - min(created_at))::float8 AS "oldest?"
             FROM outbox WHERE published_at IS NULL"#,
        )
        .fetch_one(&self.pool)
        .await
        .map(|r| (r.pending, r.oldest));
        if let Ok((pending, oldest)) = backlog {
            self.metrics.pending.set(pending);
            self.metrics.oldest_age.set(oldest.unwrap_or(0.0));
        }
    }

    /// Deletes published outbox rows, inbox rows and failure counts older than the retention
    /// (which must exceed Pub/Sub's message retention, so a redelivery still finds its inbox
    /// row).
    async fn prune(&self) {
        let retention = self.settings.retention.as_secs_f64();
        let results = [
            (
                "outbox",
                sqlx::query!(
                    "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)",
                    retention,
                )
                .execute(&self.pool)
                .await,
            ),
            (
                "processed_events",
                sqlx::query!(
                    "DELETE FROM processed_events WHERE processed_at < now() - make_interval(secs => $1)",
                    retention,
                )
                .execute(&self.pool)
                .await,
            ),
            (
                "consumer_failures",
                sqlx::query!(
                    "DELETE FROM consumer_failures WHERE last_failed_at < now() - make_interval(secs => $1)",
                    retention,
                )
                .execute(&self.pool)
                .await,
            ),
        ];
        for (table, result) in results {
            if let Err(error) = result {
                tracing::warn!(message = "Prune failed.", %error, table);
            }
        }
    }
}
