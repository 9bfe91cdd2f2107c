//! Idempotent consumers.
//!
//! A [`Consumer`] opens N streaming pulls on one subscription and dispatches each message by
//! `ce-type` to the typed [`Handler`] registered for it. The handler runs in a database
//! transaction together with the inbox row `processed_events(handler, event_id)`; the message is
//! acknowledged only after that commit. A duplicate (same `ce-id`) finds the inbox row and is
//! acknowledged without effect. A handler error rolls back and nacks, so Pub/Sub redelivers with
//! backoff. Failures are counted per message in `consumer_failures`; at
//! [`ConsumerSettings::max_attempts`] the consumer publishes the message, with the reason, to the
//! subscription's dead-letter topic and acknowledges it (Pub/Sub's own dead-letter policy, with
//! a higher limit, stays as a backstop; the emulator does not dead-letter ordered messages).
//! Unknown event types are acknowledged and counted.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use google_cloud_pubsub::client::{BasePublisher, Subscriber};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::ShutdownBehavior;
use google_cloud_pubsub::subscriber::handler::Handler as AckHandler;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::envelope::{Envelope, Event};
use super::pubsub::PubSubConfig;
use crate::telemetry::Metrics;

/// Applies one event of type `E` inside the given transaction.
pub trait Handler<E: Event>: Send + Sync + 'static {
    /// An error rolls the transaction back and the message is redelivered later.
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        event: E,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Plain functions are handlers:
/// `fn on_listed<'a>(tx: &'a mut PgConnection, envelope: &'a Envelope, event: SymbolListed)
/// -> BoxFuture<'a, anyhow::Result<()>>`.
impl<E, F> Handler<E> for F
where
    E: Event,
    F: for<'a> Fn(&'a mut PgConnection, &'a Envelope, E) -> BoxFuture<'a, anyhow::Result<()>>
        + Send
        + Sync
        + 'static,
{
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        event: E,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        self(tx, envelope, event)
    }
}

enum DispatchError {
    Decode(prost::DecodeError),
    Handler(anyhow::Error),
}

trait Erased: Send + Sync {
    fn name(&self) -> &str;
    fn dispatch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<(), DispatchError>>;
}

struct Typed<E, H> {
    name: String,
    handler: H,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event, H: Handler<E>> Erased for Typed<E, H> {
    fn name(&self) -> &str {
        &self.name
    }
    fn dispatch<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<(), DispatchError>> {
        Box::pin(async move {
            let event = E::decode(data).map_err(DispatchError::Decode)?;
            self.handler
                .handle(tx, envelope, event)
                .await
                .map_err(DispatchError::Handler)
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    subscription: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabels {
    subscription: String,
}

/// Consumer metrics; `outcome` is one of received, acked, nacked, duplicate, unknown_type,
/// malformed, decode_failed, handler_failed, dead_lettered.
#[derive(Clone)]
pub struct ConsumerMetrics {
    messages: Family<OutcomeLabels, Counter>,
    handler_seconds: Family<SubscriptionLabels, Histogram>,
}

impl ConsumerMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            messages: metrics.register(
                "consumer_messages",
                "Messages seen by consumers, by subscription and outcome.",
                Family::default(),
            ),
            handler_seconds: metrics.register(
                "consumer_handler_seconds",
                "Handler time including its transaction, by subscription.",
                Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
                }),
            ),
        }
    }

    fn count(&self, subscription: &str, outcome: &'static str) {
        self.messages
            .get_or_create(&OutcomeLabels {
                subscription: subscription.to_owned(),
                outcome,
            })
            .inc();
    }
}

/// Consumer tuning.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Parallel streaming pulls.
    pub streams: usize,
    /// Messages handled at once (backpressure: pulling waits for a free slot).
    pub concurrency: usize,
    /// Failed deliveries of one message before it moves to the dead-letter topic.
    pub max_attempts: i32,
    /// The stream's ack deadline, by which the client extends the leases of messages it is
    /// handling. It is also how long Pub/Sub waits before it redelivers what a crashed or
    /// restarted replica held (the emulator waits this long even after a clean stream close,
    /// which holds back a whole ordering key). 10 s is Pub/Sub's minimum; the client's default,
    /// 60 s, made every restart stall ordered keys for a minute.
    pub lease_extension: Duration,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            streams: 2,
            concurrency: 64,
            max_attempts: 5,
            lease_extension: Duration::from_secs(10),
        }
    }
}

/// Attributes added to a dead-lettered message (the original ones are kept).
pub mod dead_letter_attr {
    pub const REASON: &str = "mirai-dead-letter-reason";
    pub const SUBSCRIPTION: &str = "mirai-dead-letter-subscription";
    pub const ATTEMPTS: &str = "mirai-dead-letter-attempts";
}

/// How long a stopping stream may take to flush acks and nack what it still holds.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Pulls one subscription and dispatches to typed handlers.
pub struct Consumer {
    pool: PgPool,
    subscription: String,
    path: String,
    dead_letter_topic: String,
    handlers: HashMap<&'static str, Arc<dyn Erased>>,
    settings: ConsumerSettings,
    metrics: ConsumerMetrics,
}

impl Consumer {
    /// A consumer of `subscription` (a name from the topology table).
    pub fn new(
        pool: PgPool,
        config: &PubSubConfig,
        subscription: &str,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            pool,
            subscription: subscription.to_owned(),
            path: config.subscription_path(subscription),
            dead_letter_topic: config.topic_path(&super::topology::dead_letter_name(subscription)),
            handlers: HashMap::new(),
            settings,
            metrics,
        }
    }

    /// Registers the handler of `E`; `name` identifies it in the inbox (keep it stable).
    pub fn on<E: Event, H: Handler<E>>(mut self, name: &str, handler: H) -> Self {
        self.handlers.insert(
            E::TYPE,
            Arc::new(Typed::<E, H> {
                name: name.to_owned(),
                handler,
                _event: PhantomData,
            }),
        );
        self
    }

    /// Runs until `shutdown`, then stops pulling and waits for in-flight handlers. `publisher`
    /// moves messages to the dead-letter topic.
    pub async fn run(
        self,
        subscriber: Subscriber,
        publisher: BasePublisher,
        shutdown: CancellationToken,
    ) {
        let dead_letters = publisher.publisher(self.dead_letter_topic.clone()).build();
        let shared = Arc::new(Running {
            consumer: self,
            dead_letters,
        });
        let permits = Arc::new(Semaphore::new(shared.consumer.settings.concurrency));
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..shared.consumer.settings.streams.max(1) {
            let (shared, permits, shutdown) = (shared.clone(), permits.clone(), shutdown.clone());
            // On shutdown, messages the stream holds but we never started are nacked at once,
            // so another replica (or this service after a restart) gets them without waiting
            // for their ack deadline; acks of finished handlers are flushed first.
            let mut stream = subscriber
                .subscribe(shared.consumer.path.clone())
                .set_max_outstanding_messages(shared.consumer.settings.concurrency as i64)
                .set_max_lease_extension(shared.consumer.settings.lease_extension)
                .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
                .build();
            let stream_shutdown = stream.shutdown_token();
            streams.spawn(async move {
                let mut in_flight = tokio::task::JoinSet::new();
                // Messages of one ordering key are handled one after another, in arrival order:
                // each waits for the previous one of its key.
                let mut tails: HashMap<String, Shared<BoxFuture<'static, ()>>> = HashMap::new();
                loop {
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        permit = permits.clone().acquire_owned() => permit.expect("semaphore open"),
                    };
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        next = stream.next() => next,
                    };
                    match next {
                        Some(Ok((message, ack))) => {
                            let shared = shared.clone();
                            let key = message.ordering_key.clone();
                            let previous = if key.is_empty() { None } else { tails.remove(&key) };
                            let task = async move {
                                if let Some(previous) = previous {
                                    previous.await;
                                }
                                shared.process(message, ack).await;
                                drop(permit);
                            }
                            .boxed()
                            .shared();
                            if !key.is_empty() {
                                tails.insert(key, task.clone());
                            }
                            in_flight.spawn(task);
                            tails.retain(|_, tail| tail.peek().is_none());
                        }
                        Some(Err(error)) => {
                            tracing::warn!(message = "Streaming pull failed; the client retries.", %error, subscription = %shared.consumer.subscription);
                        }
                        None => break,
                    }
                    while in_flight.try_join_next().is_some() {}
                }
                while in_flight.join_next().await.is_some() {}
                if tokio::time::timeout(SHUTDOWN_FLUSH, stream_shutdown.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!(message = "Pending acks not flushed in time; those messages will be redelivered.", subscription = %shared.consumer.subscription);
                }
            });
        }
        while streams.join_next().await.is_some() {}
        tracing::info!(message = "Consumer stopped.", subscription = %shared.consumer.subscription);
    }
}

/// A running consumer and its dead-letter publisher.
struct Running {
    consumer: Consumer,
    dead_letters: google_cloud_pubsub::client::Publisher,
}

impl Running {
    async fn process(&self, message: Message, ack: AckHandler) {
        let sub = self.consumer.subscription.as_str();
        let metrics = &self.consumer.metrics;
        metrics.count(sub, "received");
        let envelope = match Envelope::from_attributes(&message.attributes) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("malformed envelope: {error}");
                return self.fail(message, ack, "malformed", reason).await;
            }
        };
        let Some(handler) = self.consumer.handlers.get(envelope.event_type.as_str()) else {
            metrics.count(sub, "unknown_type");
            ack.ack();
            return;
        };
        let span = tracing::info_span!(
            "event.handle",
            otel.name = %format!("{} handle", envelope.event_type),
            otel.kind = "consumer",
            messaging.system = "gcp_pubsub",
            messaging.destination.subscription.name = sub,
            messaging.message.id = %envelope.id,
            event.r#type = %envelope.event_type,
            handler = handler.name(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let _ = span.set_parent(envelope.parent_context());
        crate::telemetry::record_ids(&span);
        let started = Instant::now();
        let outcome = self
            .apply(handler.as_ref(), &envelope, &message.data)
            .instrument(span)
            .await;
        metrics
            .handler_seconds
            .get_or_create(&SubscriptionLabels {
                subscription: sub.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(true) => {
                metrics.count(sub, "acked");
                ack.ack();
            }
            Ok(false) => {
                metrics.count(sub, "duplicate");
                ack.ack();
            }
            Err((kind, reason)) => self.fail(message, ack, kind, reason).await,
        }
    }

    /// Counts a failed delivery; below the limit the message is nacked for redelivery, at the
    /// limit it goes to the dead-letter topic with the reason and is acknowledged.
    async fn fail(&self, message: Message, ack: AckHandler, kind: &'static str, reason: String) {
        let sub = self.consumer.subscription.as_str();
        let metrics = &self.consumer.metrics;
        metrics.count(sub, kind);
        let attempts: Result<i32, sqlx::Error> = sqlx::query_scalar!(
            "INSERT INTO consumer_failures (subscription, message_id, attempts, last_error)
             VALUES ($1, $2, 1, $3)
             ON CONFLICT (subscription, message_id) DO UPDATE
                SET attempts = consumer_failures.attempts + 1, last_error = EXCLUDED.last_error,
                    last_failed_at = now()
             RETURNING attempts",
            sub,
            &message.message_id,
            &reason,
        )
        .fetch_one(&self.consumer.pool)
        .await;
        let attempts = match attempts {
            Ok(attempts) if attempts >= self.consumer.settings.max_attempts => attempts,
            Ok(attempts) => {
                tracing::warn!(message = "Delivery failed; nacking for redelivery.", subscription = sub, attempts, %reason);
                metrics.count(sub, "nacked");
                ack.nack();
                return;
            }
            Err(error) => {
                tracing::warn!(message = "Delivery failed and could not be counted; nacking.", subscription = sub, %reason, %error);
                metrics.count(sub, "nacked");
                ack.nack();
                return;
            }
        };
        let mut attributes = message.attributes.clone();
        attributes.insert(
            dead_letter_attr::REASON.to_owned(),
            reason.chars().take(1000).collect(),
        );
        attributes.insert(dead_letter_attr::SUBSCRIPTION.to_owned(), sub.to_owned());
        attributes.insert(dead_letter_attr::ATTEMPTS.to_owned(), attempts.to_string());
        let dead = Message::new()
            .set_data(message.data.clone())
            .set_attributes(attributes);
        match self.dead_letters.publish(dead).await {
            Ok(_) => {
                let _ = sqlx::query!(
                    "UPDATE consumer_failures SET dead_lettered_at = now()
                     WHERE subscription = $1 AND message_id = $2",
                    sub,
                    &message.message_id,
                )
                .execute(&self.consumer.pool)
                .await;
                tracing::error!(message = "Message moved to the dead-letter topic.", subscription = sub, attempts, %reason);
                metrics.count(sub, "dead_lettered");
                ack.ack();
            }
            Err(error) => {
                tracing::warn!(message = "Dead-lettering failed; nacking.", subscription = sub, %error);
                metrics.count(sub, "nacked");
                ack.nack();
            }
        }
    }

    /// Ok(true) applied, Ok(false) duplicate, Err((outcome, reason)) failed (rolled back).
    async fn apply(
        &self,
        handler: &dyn Erased,
        envelope: &Envelope,
        data: &[u8],
    ) -> Result<bool, (&'static str, String)> {
        let result: Result<bool, DispatchError> = async {
            let mut tx = self
                .consumer
                .pool
                .begin()
                .await
                .map_err(|e| DispatchError::Handler(e.into()))?;
            let inserted = sqlx::query!(
                "INSERT INTO processed_events (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                handler.name(),
                envelope.id,
            )
            .execute(&mut *tx)
            .await
            .map_err(|e| DispatchError::Handler(e.into()))?
            .rows_affected();
            if inserted == 0 {
                return Ok(false);
            }
            handler.dispatch(&mut tx, envelope, data).await?;
            tx.commit().await.map_err(|e| DispatchError::Handler(e.into()))?;
            Ok(true)
        }
        .await;
        match result {
            Ok(applied) => Ok(applied),
            Err(DispatchError::Decode(error)) => {
                Err(("decode_failed", format!("payload does not decode: {error}")))
            }
            Err(DispatchError::Handler(error)) => Err((
                "handler_failed",
                format!("handler {}: {error:#}", handler.name()),
            )),
        }
    }
}
