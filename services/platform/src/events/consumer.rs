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
//!
//! # Batched mode
//!
//! A consumer made with [`Consumer::batched`] (opt-in; everyone else keeps the mode above)
//! handles several messages in one transaction. Messages go to [`Batching::lanes`] lanes by
//! their ordering key (every message of a key through the same lane, in arrival order; messages
//! without a key round-robin); a lane takes whatever has queued up while its previous batch ran,
//! up to [`Batching::max_batch`], so a quiet consumer still handles one message at a time. A
//! batch is one transaction: the inbox rows of all its events in one statement (an event whose
//! row exists, or a second copy of one in the same batch, is a duplicate and has no effect), then
//! each event's handler in arrival order, then one commit, and only then the acknowledgements.
//! If any handler fails (or the commit does), the whole transaction rolls back and every event of
//! the batch is handled again alone, in order, exactly as in the unbatched mode: the batch mates
//! commit on their own, the failing event is counted, nacked and eventually dead-lettered as
//! usual. In that retry, the events after a failed one *of the same ordering key* are nacked
//! without running (not counted as failures), so they are redelivered behind it rather than
//! overtaking it.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use google_cloud_pubsub::client::{BasePublisher, Subscriber};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::subscriber::handler::Handler as AckHandler;
use google_cloud_pubsub::subscriber::{MessageStream, ShutdownBehavior};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
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
/// malformed, decode_failed, handler_failed, dead_lettered; in batched mode also batch_split
/// (once per batch that rolled back and was handled one by one) and deferred (nacked behind a
/// nacked event of its ordering key). In batched mode a message's handler time is its batch's.
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

/// Batched mode (see the module documentation): several messages per transaction.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Lanes handling batches concurrently; every message of one ordering key goes through the
    /// same lane.
    pub lanes: usize,
    /// Most messages in one transaction.
    pub max_batch: usize,
    /// Messages held at once (pulled, not yet handled), and each stream's flow-control limit
    /// (instead of [`ConsumerSettings::concurrency`]). Pub/Sub counts a message as outstanding
    /// until the client's acknowledgements go out (the client flushes them every 100 ms), so
    /// the limit must also cover what arrives in that time: 64 per stream would cap two
    /// streams near 64 × 2 per flush whatever the handlers' speed (reasoned from the client's
    /// flush period, not measured apart).
    pub max_outstanding: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            lanes: 4,
            max_batch: 64,
            max_outstanding: 1000,
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
    batching: Option<Batching>,
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
            batching: None,
        }
    }

    /// Switches this consumer to batched mode (see the module documentation): several messages
    /// per transaction, one lane per ordering key. Only for handlers that may share a
    /// transaction with other events' handlers.
    pub fn batched(mut self, batching: Batching) -> Self {
        self.batching = Some(batching);
        self
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
        let batching = self.batching;
        let shared = Arc::new(Running {
            consumer: self,
            dead_letters,
        });
        if let Some(batching) = batching {
            return shared.run_batched(batching, subscriber, shutdown).await;
        }
        let permits = Arc::new(Semaphore::new(shared.consumer.settings.concurrency));
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..shared.consumer.settings.streams.max(1) {
            let (shared, permits, shutdown) = (shared.clone(), permits.clone(), shutdown.clone());
            // Acks of finished handlers are flushed before the stream shuts down.
            let mut stream = shared.open_stream(&subscriber, shared.consumer.settings.concurrency);
            let stream_shutdown = stream.shutdown_token();
            streams.spawn(async move {
                let mut in_flight = tokio::task::JoinSet::new();
                // Messages of one ordering key are handled one after another, in arrival order:
                // each waits for the previous one of its key.
                let mut tails: HashMap<String, Shared<BoxFuture<'static, ()>>> = HashMap::new();
                while let Some((message, ack, permit)) =
                    shared.next_message(&mut stream, &permits, &shutdown).await
                {
                    let shared = shared.clone();
                    let key = message.ordering_key.clone();
                    let previous = if key.is_empty() { None } else { tails.remove(&key) };
                    let task = async move {
                        if let Some(previous) = previous {
                            previous.await;
                        }
                        let _ = shared.process(message, ack).await;
                        drop(permit);
                    }
                    .boxed()
                    .shared();
                    if !key.is_empty() {
                        tails.insert(key, task.clone());
                    }
                    in_flight.spawn(task);
                    tails.retain(|_, tail| tail.peek().is_none());
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

/// A message whose envelope parsed and whose type has a handler.
struct Work {
    message: Message,
    ack: AckHandler,
    envelope: Envelope,
    handler: Arc<dyn Erased>,
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Acknowledged: applied, duplicate, unknown type or dead-lettered.
    Done,
    /// Nacked for redelivery.
    Nacked,
}

/// A message with its acknowledgement and the permit it holds until it is handled.
type Pulled = (Message, AckHandler, OwnedSemaphorePermit);

impl Running {
    /// One streaming pull on the subscription, holding at most `outstanding` messages. On
    /// shutdown, messages it holds but never handed out are nacked at once, so another replica
    /// (or this service after a restart) gets them without waiting for their ack deadline.
    fn open_stream(&self, subscriber: &Subscriber, outstanding: usize) -> MessageStream {
        subscriber
            .subscribe(self.consumer.path.clone())
            .set_max_outstanding_messages(outstanding as i64)
            .set_max_lease_extension(self.consumer.settings.lease_extension)
            .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
            .build()
    }

    /// The stream's next message once a permit is free, with the permit; `None` on shutdown or
    /// at the stream's end. A failed pull is logged and skipped (the client retries it).
    async fn next_message(
        &self,
        stream: &mut MessageStream,
        permits: &Arc<Semaphore>,
        shutdown: &CancellationToken,
    ) -> Option<Pulled> {
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => return None,
                permit = permits.clone().acquire_owned() => permit.expect("semaphore open"),
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => return None,
                next = stream.next() => next,
            };
            match next? {
                Ok((message, ack)) => return Some((message, ack, permit)),
                Err(error) => {
                    tracing::warn!(message = "Streaming pull failed; the client retries.", %error, subscription = %self.consumer.subscription);
                }
            }
        }
    }

    async fn process(&self, message: Message, ack: AckHandler) -> Handled {
        match self.prepare(message, ack).await {
            Ok(work) => self.process_one(work).await,
            Err(handled) => handled,
        }
    }

    /// Parses the envelope and finds the handler; otherwise the message is settled here.
    async fn prepare(&self, message: Message, ack: AckHandler) -> Result<Work, Handled> {
        let sub = self.consumer.subscription.as_str();
        let metrics = &self.consumer.metrics;
        metrics.count(sub, "received");
        let envelope = match Envelope::from_attributes(&message.attributes) {
            Ok(envelope) => envelope,
            Err(error) => {
                let reason = format!("malformed envelope: {error}");
                return Err(self.fail(message, ack, "malformed", reason).await);
            }
        };
        let Some(handler) = self.consumer.handlers.get(envelope.event_type.as_str()) else {
            metrics.count(sub, "unknown_type");
            ack.ack();
            return Err(Handled::Done);
        };
        Ok(Work {
            message,
            ack,
            envelope,
            handler: handler.clone(),
        })
    }

    fn span(&self, work: &Work) -> tracing::Span {
        let envelope = &work.envelope;
        let span = tracing::info_span!(
            "event.handle",
            otel.name = %format!("{} handle", envelope.event_type),
            otel.kind = "consumer",
            messaging.system = "gcp_pubsub",
            messaging.destination.subscription.name = self.consumer.subscription.as_str(),
            messaging.message.id = %envelope.id,
            event.r#type = %envelope.event_type,
            handler = work.handler.name(),
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let _ = span.set_parent(envelope.parent_context());
        crate::telemetry::record_ids(&span);
        span
    }

    fn observe(&self, started: Instant) {
        self.consumer
            .metrics
            .handler_seconds
            .get_or_create(&SubscriptionLabels {
                subscription: self.consumer.subscription.clone(),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// One message in its own transaction.
    async fn process_one(&self, work: Work) -> Handled {
        let sub = self.consumer.subscription.as_str();
        let metrics = &self.consumer.metrics;
        let span = self.span(&work);
        let started = Instant::now();
        let outcome = self
            .apply(work.handler.as_ref(), &work.envelope, &work.message.data)
            .instrument(span)
            .await;
        self.observe(started);
        match outcome {
            Ok(true) => {
                metrics.count(sub, "acked");
                work.ack.ack();
                Handled::Done
            }
            Ok(false) => {
                metrics.count(sub, "duplicate");
                work.ack.ack();
                Handled::Done
            }
            Err((kind, reason)) => self.fail(work.message, work.ack, kind, reason).await,
        }
    }

    /// Batched mode: up to `max_batch` messages of one lane at a time, until the lane closes.
    async fn run_lane(&self, mut lane: mpsc::UnboundedReceiver<Pulled>, max_batch: usize) {
        while let Some(first) = lane.recv().await {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match lane.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let mut permits = Vec::with_capacity(batch.len());
            let mut work = Vec::with_capacity(batch.len());
            for (message, ack, permit) in batch {
                permits.push(permit);
                if let Ok(w) = self.prepare(message, ack).await {
                    work.push(w);
                }
            }
            self.process_batch(work).await;
            drop(permits);
        }
    }

    /// Batched mode: the messages in one transaction, acknowledged after its commit; if it
    /// fails, each one alone, in order (the events after a nacked one of the same ordering key
    /// are nacked too, so they do not overtake it).
    async fn process_batch(&self, work: Vec<Work>) {
        if work.len() <= 1 {
            for w in work {
                self.process_one(w).await;
            }
            return;
        }
        let sub = self.consumer.subscription.as_str();
        let metrics = &self.consumer.metrics;
        let started = Instant::now();
        match self.apply_batch(&work).await {
            Ok(applied) => {
                for (w, applied) in work.into_iter().zip(applied) {
                    self.observe(started);
                    metrics.count(sub, if applied { "acked" } else { "duplicate" });
                    w.ack.ack();
                }
            }
            Err(error) => {
                tracing::info!(message = "Batch failed; handling its events one by one.", subscription = sub, events = work.len(), error = %format!("{error:#}"));
                metrics.count(sub, "batch_split");
                let mut stopped: Vec<String> = Vec::new();
                for w in work {
                    let key = w.message.ordering_key.clone();
                    if !key.is_empty() && stopped.contains(&key) {
                        metrics.count(sub, "deferred");
                        w.ack.nack();
                        continue;
                    }
                    if self.process_one(w).await == Handled::Nacked && !key.is_empty() {
                        stopped.push(key);
                    }
                }
            }
        }
    }

    /// The batch's inbox rows and handlers in one transaction; per message whether it was
    /// applied (false: a duplicate). Any error rolls everything back.
    async fn apply_batch(&self, work: &[Work]) -> anyhow::Result<Vec<bool>> {
        let mut tx = self.consumer.pool.begin().await?;
        let names: Vec<String> = work.iter().map(|w| w.handler.name().to_owned()).collect();
        let ids: Vec<uuid::Uuid> = work.iter().map(|w| w.envelope.id).collect();
        let rows = sqlx::query!(
            r#"INSERT INTO processed_events (handler, event_id)
               SELECT * FROM unnest($1::text[], $2::uuid[])
               ON CONFLICT DO NOTHING
               RETURNING handler, event_id"#,
            &names,
            &ids,
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut fresh: HashSet<(String, uuid::Uuid)> =
            rows.into_iter().map(|r| (r.handler, r.event_id)).collect();
        let mut applied = Vec::with_capacity(work.len());
        for w in work {
            // A second copy of an event in the same batch finds its row taken by the first.
            let new = fresh.remove(&(w.handler.name().to_owned(), w.envelope.id));
            if new {
                let span = self.span(w);
                w.handler
                    .dispatch(&mut tx, &w.envelope, &w.message.data)
                    .instrument(span)
                    .await
                    .map_err(|e| match e {
                        DispatchError::Decode(error) => {
                            anyhow::anyhow!("{}: payload does not decode: {error}", w.envelope.id)
                        }
                        DispatchError::Handler(error) => {
                            error.context(format!("handler {}", w.handler.name()))
                        }
                    })?;
            }
            applied.push(new);
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Batched mode: the streams pull and hand each message to the lane of its ordering key;
    /// the lanes run batches. On shutdown the streams stop pulling, the lanes finish what they
    /// were handed, then the streams flush their acks.
    async fn run_batched(
        self: Arc<Self>,
        batching: Batching,
        subscriber: Subscriber,
        shutdown: CancellationToken,
    ) {
        let settings = self.consumer.settings;
        let outstanding = batching.max_outstanding.max(1);
        let permits = Arc::new(Semaphore::new(outstanding));
        let mut lanes = tokio::task::JoinSet::new();
        let mut senders = Vec::new();
        for _ in 0..batching.lanes.max(1) {
            let (sender, receiver) = mpsc::unbounded_channel::<Pulled>();
            senders.push(sender);
            let shared = self.clone();
            let max_batch = batching.max_batch.max(1);
            lanes.spawn(async move { shared.run_lane(receiver, max_batch).await });
        }
        let senders = Arc::new(senders);
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..settings.streams.max(1) {
            let (shared, permits, shutdown, senders) = (
                self.clone(),
                permits.clone(),
                shutdown.clone(),
                senders.clone(),
            );
            let mut stream = shared.open_stream(&subscriber, outstanding);
            streams.spawn(async move {
                let mut unordered = 0usize;
                while let Some((message, ack, permit)) =
                    shared.next_message(&mut stream, &permits, &shutdown).await
                {
                    let lane = if message.ordering_key.is_empty() {
                        unordered = unordered.wrapping_add(1);
                        unordered % senders.len()
                    } else {
                        let mut hasher = std::hash::DefaultHasher::new();
                        message.ordering_key.hash(&mut hasher);
                        (hasher.finish() % senders.len() as u64) as usize
                    };
                    // A lane only closes after the streams are done.
                    let _ = senders[lane].send((message, ack, permit));
                }
                stream
            });
        }
        drop(senders);
        let mut stopped = Vec::new();
        while let Some(stream) = streams.join_next().await {
            if let Ok(stream) = stream {
                stopped.push(stream);
            }
        }
        // Every sender is gone with its stream task: the lanes drain and end.
        while lanes.join_next().await.is_some() {}
        for stream in &stopped {
            if tokio::time::timeout(SHUTDOWN_FLUSH, stream.shutdown_token().shutdown())
                .await
                .is_err()
            {
                tracing::warn!(message = "Pending acks not flushed in time; those messages will be redelivered.", subscription = %self.consumer.subscription);
            }
        }
        tracing::info!(message = "Consumer stopped.", subscription = %self.consumer.subscription);
    }

    /// Counts a failed delivery; below the limit the message is nacked for redelivery, at the
    /// limit it goes to the dead-letter topic with the reason and is acknowledged.
    async fn fail(
        &self,
        message: Message,
        ack: AckHandler,
        kind: &'static str,
        reason: String,
    ) -> Handled {
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
                return Handled::Nacked;
            }
            Err(error) => {
                tracing::warn!(message = "Delivery failed and could not be counted; nacking.", subscription = sub, %reason, %error);
                metrics.count(sub, "nacked");
                ack.nack();
                return Handled::Nacked;
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
                Handled::Done
            }
            Err(error) => {
                tracing::warn!(message = "Dead-lettering failed; nacking.", subscription = sub, %error);
                metrics.count(sub, "nacked");
                ack.nack();
                Handled::Nacked
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
