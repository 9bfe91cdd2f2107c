//! Assembly of `mirai-analytics`: the gRPC API, the consumers (symbols, bars, deletion saga),
//! the start-up backfill and the report workers, on [`ServiceApp`].

use std::sync::Arc;

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_platform::config::ServiceConfig;
use mirai_platform::grpc::client::Client;
use mirai_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use sqlx::migrate::Migrator;
use tokio::sync::Notify;

use crate::backfill::{self, StockData};
use crate::config::Config;
use crate::grpc::Api;
use crate::reports::build::Sources;
use crate::reports::worker::Worker;

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Why the service could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The platform skeleton failed (database, migrations, Pub/Sub, listeners).
    #[error(transparent)]
    Startup(#[from] StartupError),
}

/// The service with default settings around `config` (what the platform's conformance tests
/// and the gateway's in-process tests start).
pub async fn build(config: &ServiceConfig) -> Result<ServiceApp, BuildError> {
    build_with(&Config::with_service(config.clone())).await
}

/// Prepares the database and listeners, registers the gRPC service, the event consumers, the
/// start-up backfill and the report workers.
pub async fn build_with(config: &Config) -> Result<ServiceApp, BuildError> {
    let mut app = ServiceApp::prepare(&config.service, &MIGRATIONS).await?;
    let stock_data = StockData::new(
        Client::build(
            "stock-data",
            &config.stock_data,
            &app.metrics,
            &config.service.identity.signer,
        )
        .channel(),
        config.backfill_page,
    );
    let sources = Sources::new(
        app.pool.clone(),
        Client::build(
            "prediction",
            &config.prediction,
            &app.metrics,
            &config.service.identity.signer,
        )
        .channel(),
    );
    let wake = Arc::new(Notify::new());
    app.server.add_service(AnalyticsServiceServer::new(Api::new(
        app.pool.clone(),
        stock_data.clone(),
        wake.clone(),
        config.reports,
    )));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    crate::events::consume(&mut app);
    if config.backfill_on_start {
        let pool = app.pool.clone();
        app.background("backfill", move |stop| {
            Box::pin(backfill::catch_up(stock_data, pool, stop))
        });
    }
    let worker = Worker {
        sources,
        settings: config.reports,
        wake,
    };
    app.background("reports", move |stop| Box::pin(worker.run(stop)));
    Ok(app)
}
