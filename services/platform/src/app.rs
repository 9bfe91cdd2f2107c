//! The skeleton every gRPC service is assembled on.
//!
//! [`ServiceApp::prepare`] connects to the service's database, applies migrations, provisions
//! Pub/Sub when configured, binds the gRPC and admin listeners and registers the database
//! readiness check. The service then adds its tonic services to [`ServiceApp::server`], its
//! event handlers with [`ServiceApp::consume`], periodic work with [`ServiceApp::background`],
//! and calls [`ServiceApp::run_until_stopped`], which also runs the outbox relay.

use std::net::SocketAddr;

use futures::future::BoxFuture;
use google_cloud_pubsub::client::{BasePublisher, Subscriber};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::db::{self, MigrationError};
use crate::events::consumer::{Consumer, ConsumerMetrics, ConsumerSettings};
use crate::events::outbox::{Relay, RelayMetrics, RelaySettings};
use crate::events::pubsub::{self, ClientError, PubSubConfig};
use crate::events::topology::{self, DeliveryPolicy, ProvisionError};
use crate::grpc::{GrpcServer, ServeError};
use crate::telemetry::Metrics;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database was unreachable for the whole connect timeout, or refused us.
    #[error("database connection: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed; the service does not start on a schema it does not understand.
    #[error("database migration: {0}")]
    Migration(#[from] MigrationError),
    /// The Pub/Sub clients could not be built.
    #[error(transparent)]
    PubSub(#[from] ClientError),
    /// Topics or subscriptions could not be created.
    #[error("Pub/Sub provisioning: {0}")]
    Provision(#[from] ProvisionError),
    /// A listener could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A prepared service: database ready, listeners bound, nothing served yet.
pub struct ServiceApp {
    pub server: GrpcServer,
    pub pool: PgPool,
    pub metrics: Metrics,
    pub pubsub: PubSubConfig,
    consumer_name: &'static str,
    publisher: BasePublisher,
    subscriber: Subscriber,
    consumer_metrics: ConsumerMetrics,
    consumers: Vec<Consumer>,
    background: Vec<(&'static str, BackgroundTask)>,
}

/// Work that runs beside the server until shutdown (sweeps, schedules); it receives the
/// shutdown token and should return promptly once it fires.
pub type BackgroundTask = Box<dyn FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send>;

impl ServiceApp {
    pub async fn prepare(
        config: &ServiceConfig,
        migrations: &Migrator,
    ) -> Result<Self, StartupError> {
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, migrations).await?;
        let consumer_name = config.consumer_name();
        if config.pubsub.provision {
            topology::provision(
                &config.pubsub,
                &topology::subscriptions_of(consumer_name),
                DeliveryPolicy::default(),
            )
            .await?;
        }
        let publisher = pubsub::publisher(&config.pubsub).await?;
        let subscriber = pubsub::subscriber(&config.pubsub).await?;
        let metrics = Metrics::new();
        let server = GrpcServer::bind(config, metrics.clone()).await?;
        server
            .readiness()
            .add_check("database", db::readiness_check(pool.clone()));
        let pool_metrics = db::PoolMetrics::register(&metrics);
        crate::telemetry::QueryMetrics::process().register(&metrics);
        let sampled = pool.clone();
        let background: Vec<(&'static str, BackgroundTask)> = vec![(
            "database pool metrics",
            Box::new(move |stop| Box::pin(pool_metrics.run(sampled, stop))),
        )];
        Ok(Self {
            server,
            pool,
            consumer_metrics: ConsumerMetrics::register(&metrics),
            metrics,
            pubsub: config.pubsub.clone(),
            consumer_name,
            publisher,
            subscriber,
            consumers: Vec::new(),
            background,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// A consumer of this service's subscription to `topic` (see [`topology::topics`]); register
    /// its handlers with [`Consumer::on`] and hand it to [`ServiceApp::consume`].
    pub fn consumer(&self, topic: &str) -> Consumer {
        let subscription = format!("{}.{topic}", self.consumer_name);
        debug_assert!(
            topology::subscriptions_of(self.consumer_name)
                .iter()
                .any(|spec| spec.name == subscription),
            "{subscription} is not in topology::SUBSCRIPTIONS"
        );
        Consumer::new(
            self.pool.clone(),
            &self.pubsub,
            &subscription,
            ConsumerSettings::default(),
            self.consumer_metrics.clone(),
        )
    }

    /// Runs `consumer` alongside the server.
    pub fn consume(&mut self, consumer: Consumer) {
        self.consumers.push(consumer);
    }

    /// Runs `task` alongside the server; `name` appears in the logs.
    pub fn background<F>(&mut self, name: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> BoxFuture<'static, ()> + Send + 'static,
    {
        self.background.push((name, Box::new(task)));
    }

    /// Serves until `shutdown` fires. Then the server drains (see [`GrpcServer::serve`]) while
    /// the consumers stop pulling and finish their in-flight handlers and the background tasks
    /// return; the relay publishes what is committed until all are done, and the pool closes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let relay_stop = CancellationToken::new();
        let mut relay = tokio::spawn(
            Relay::new(
                self.pool.clone(),
                self.pubsub.clone(),
                self.publisher.clone(),
                RelaySettings::default(),
                RelayMetrics::register(&self.metrics),
            )
            .run(relay_stop.clone()),
        );
        let mut consumers = tokio::task::JoinSet::new();
        for consumer in self.consumers {
            consumers.spawn(consumer.run(
                self.subscriber.clone(),
                self.publisher.clone(),
                shutdown.clone(),
            ));
        }
        let mut background = tokio::task::JoinSet::new();
        for (name, task) in self.background {
            let stop = shutdown.clone();
            background.spawn(async move {
                task(stop).await;
                tracing::debug!(message = "Background task stopped.", task = name);
            });
        }
        // The whole shutdown ends by `drain_delay + grace` after the signal, not only the
        // server's drain: a consumer or task stuck on a slow dependency is abandoned rather
        // than keeping the pod alive until SIGKILL.
        let timings = self.server.shutdown_timings();
        let limit = timings.drain_delay + timings.grace;
        let deadline = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::Instant::now() + limit
            })
        };
        let result = self.server.serve(shutdown).await;
        let deadline = deadline
            .await
            .unwrap_or_else(|_| tokio::time::Instant::now());
        let rest = async {
            while consumers.join_next().await.is_some() {}
            while background.join_next().await.is_some() {}
            relay_stop.cancel();
            let _ = (&mut relay).await;
            self.pool.close().await;
        };
        if tokio::time::timeout_at(deadline, rest).await.is_err() {
            tracing::warn!(
                message = "Grace period elapsed before consumers, background tasks and the relay stopped; abandoning them.",
                consumers = consumers.len(),
                background = background.len(),
                grace_ms = limit.as_millis() as u64
            );
            relay.abort();
        }
        result
    }
}
