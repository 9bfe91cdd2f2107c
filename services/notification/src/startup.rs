//! Assembly of `mirai-notification`.

use std::sync::Arc;
use std::time::Duration;

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_platform::config::ServiceConfig;
use mirai_proto::notification::v1::notification_service_server::NotificationServiceServer;
use sqlx::migrate::Migrator;

use crate::config::Config;
use crate::context::{Context, Shared};
use crate::deliver::{DeliveryMetrics, Worker};
use crate::evaluate::Index;
use crate::grpc::Api;
use crate::notify::FanOut;
use crate::saga;
use crate::stream::Hub;

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Why the service could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The platform skeleton failed (database, migrations, Pub/Sub, listeners).
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The evaluation index could not be loaded from the database.
    #[error("loading the alert index: {0}")]
    Index(#[from] sqlx::Error),
    /// A delivery channel could not be set up (SMTP settings, FCM key).
    #[error("delivery channels: {0:#}")]
    Channels(anyhow::Error),
}

/// The assembled service and its shared context (tests reach into it).
pub struct Application {
    pub service: ServiceApp,
    pub context: Shared,
}

impl Application {
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.service.grpc_addr()
    }
}

/// The service with default settings (what the platform's conformance tests start).
pub async fn build(config: &ServiceConfig) -> Result<ServiceApp, BuildError> {
    Ok(build_with(&Config::with_service(config.clone()))
        .await?
        .service)
}

/// Prepares the database and listeners, loads the alert index, registers the gRPC service,
/// the event consumers and the background work (delivery worker, sweeps, live streams).
pub async fn build_with(config: &Config) -> Result<Application, BuildError> {
    let mut app = ServiceApp::prepare(&config.service, &MIGRATIONS).await?;
    match &config.webhooks.secret_keys {
        Some(keys) => {
            let resealed = crate::store::endpoints::reseal_all(&app.pool, keys)
                .await
                .map_err(BuildError::Channels)?;
            if resealed > 0 {
                tracing::info!(
                    message = "Webhook signing secrets sealed or rewrapped under the current KEK.",
                    endpoints = resealed
                );
            }
        }
        None => tracing::warn!(
            message = "MIRAI_WEBHOOK_SECRET_KEYS is not set: webhook signing secrets are stored unencrypted."
        ),
    }
    let index = Index::default();
    let indexed = index.rebuild(&app.pool).await?;
    tracing::info!(message = "Alert index built.", alerts = indexed);
    let ctx: Shared = Arc::new(Context {
        pool: app.pool.clone(),
        config: config.clone(),
        index,
        fanout: FanOut {
            digest_default_deliver_at: config.digest_default_deliver_at,
        },
        hub: Hub::default(),
        email: config
            .smtp
            .as_ref()
            .map(crate::deliver::email::Email::new)
            .transpose()
            .map_err(BuildError::Channels)?,
    });
    app.server
        .add_service(NotificationServiceServer::new(Api::new(ctx.clone())));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);

    crate::events::consume(&mut app, &ctx);

    let worker = Arc::new(
        Worker::new(ctx.clone(), DeliveryMetrics::register(&app.metrics))
            .map_err(BuildError::Channels)?,
    );
    app.background("delivery-worker", move |stop| Box::pin(worker.run(stop)));
    let c = ctx.clone();
    app.background("alert-index", move |stop| {
        Box::pin(async move {
            c.index
                .follow(c.pool.clone(), Duration::from_secs(60), stop)
                .await
        })
    });
    let c = ctx.clone();
    app.background("live-notifications", move |stop| {
        Box::pin(async move { c.hub.run(c.pool.clone(), stop).await })
    });
    let c = ctx.clone();
    let interval = config.saga.sweep_interval;
    app.background("alert-sweeps", move |stop| {
        Box::pin(saga::run_sweeps(c, interval, stop))
    });
    Ok(Application {
        service: app,
        context: ctx,
    })
}
