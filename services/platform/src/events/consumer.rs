//! Idempotent consumers.
//!
//! A [`Consumer`] opens N streaming pulls on one subscription and dispatches each message by
//! `ce-type` to the typed [`Handler`] registered for it. The handler runs in a database
//! transaction together with the inbox row `processed_events(handler, event_id)`; the message is
//! acknowledged only after that commit. A duplicate (same `ce-id`) finds the inbox row and is
//! acknowledged without effect. A handler error rolls back and nacks, so Pub/Sub redelivers with
//! backoff and, after the subscription's maximum attempts, moves the message to its dead-letter
//! topic. Unknown event types are acknowledged and counted.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use google_cloud_pubsub::client::Subscriber;
use google_cloud_pubsub::model::Message;
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
/// malformed, decode_failed, handler_failed, dead_lettered_soon.
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
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            streams: 2,
            concurrency: 64,
        }
    }
}

/// Pulls one subscription and dispatches to typed handlers.
pub struct Consumer {
    pool: PgPool,
    subscription: String,
    path: String,
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

    /// Runs until `shutdown`, then stops pulling and waits for in-flight handlers.
    pub async fn run(self, subscriber: Subscriber, shutdown: CancellationToken) {
        let shared = Arc::new(self);
        let permits = Arc::new(Semaphore::new(shared.settings.concurrency));
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..shared.settings.streams.max(1) {
            let (shared, permits, shutdown) = (shared.clone(), permits.clone(), shutdown.clone());
            let mut stream = subscriber
                .subscribe(shared.path.clone())
                .set_max_outstanding_messages(shared.settings.concurrency as i64)
                .build();
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
                            tracing::warn!(message = "Streaming pull failed; the client retries.", %error, subscription = %shared.subscription);
                        }
                        None => break,
                    }
                    while in_flight.try_join_next().is_some() {}
                }
                while in_flight.join_next().await.is_some() {}
            });
        }
        while streams.join_next().await.is_some() {}
        tracing::info!(message = "Consumer stopped.", subscription = %shared.subscription);
    }

    async fn process(&self, message: Message, ack: AckHandler) {
        let sub = self.subscription.as_str();
        self.metrics.count(sub, "received");
        let envelope = match Envelope::from_attributes(&message.attributes) {
            Ok(envelope) => envelope,
            Err(error) => {
                tracing::warn!(message = "Malformed envelope; nacking (dead-letter after retries).", %error, subscription = sub);
                self.metrics.count(sub, "malformed");
                ack.nack();
                return;
            }
        };
        let Some(handler) = self.handlers.get(envelope.event_type.as_str()) else {
            self.metrics.count(sub, "unknown_type");
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
        self.metrics
            .handler_seconds
            .get_or_create(&SubscriptionLabels {
                subscription: sub.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok(true) => {
                self.metrics.count(sub, "acked");
                ack.ack();
            }
            Ok(false) => {
                self.metrics.count(sub, "duplicate");
                ack.ack();
            }
            Err(kind) => {
                self.metrics.count(sub, kind);
                self.metrics.count(sub, "nacked");
                ack.nack();
            }
        }
    }

    /// Ok(true) applied, Ok(false) duplicate, Err(outcome) failed (rolled back).
    async fn apply(
        &self,
        handler: &dyn Erased,
        envelope: &Envelope,
        data: &[u8],
    ) -> Result<bool, &'static str> {
        let result: Result<bool, DispatchError> = async {
            let mut tx = self.pool.begin().await.map_err(|e| DispatchError::Handler(e.into()))?;
            let inserted = sqlx::query(
                "INSERT INTO processed_events (handler, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(handler.name())
            .bind(envelope.id)
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
                tracing::warn!(message = "Payload does not decode; nacking (dead-letter after retries).", %error);
                Err("decode_failed")
            }
            Err(DispatchError::Handler(error)) => {
                tracing::warn!(
                    message = "Handler failed; nacking for redelivery.",
                    error = format!("{error:#}")
                );
                Err("handler_failed")
            }
        }
    }
}
