//! Assembly of `mirai-stock-data`.

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_platform::config::ServiceConfig;
use mirai_proto::stock::v1::stock_data_service_server::StockDataServiceServer;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::config::Config;
use crate::ingest::Ingest;
use crate::quotes::Quotes;
use crate::vendor::alpaca::Alpaca;

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Why the service could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The platform skeleton failed (database, migrations, Pub/Sub, listeners).
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The vendor adapter could not be built (its HTTP client).
    #[error("Alpaca adapter: {0}")]
    Vendor(#[from] crate::vendor::VendorError),
}

/// The assembled service: the platform skeleton plus the live vendor adapter, if configured.
pub struct Application {
    pub service: ServiceApp,
    alpaca: Option<Alpaca>,
}

impl Application {
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.service.pool
    }

    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.service.grpc_addr()
    }

    /// Serves until `shutdown`; the vendor adapter stops with it.
    pub async fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), mirai_platform::grpc::ServeError> {
        let adapter = self
            .alpaca
            .map(|alpaca| tokio::spawn(alpaca.run(shutdown.child_token())));
        let result = self.service.run_until_stopped(shutdown).await;
        if let Some(adapter) = adapter {
            let _ = adapter.await;
        }
        result
    }
}

/// The service with default settings and no vendor adapter (what the platform's conformance
/// tests start).
pub async fn build(config: &ServiceConfig) -> Result<ServiceApp, BuildError> {
    Ok(build_with(&Config::with_service(config.clone()))
        .await?
        .service)
}

/// Prepares the database and listeners, registers the gRPC service and the event consumers,
/// and builds the vendor adapter when configured.
pub async fn build_with(config: &Config) -> Result<Application, BuildError> {
    let mut app = ServiceApp::prepare(&config.service, &MIGRATIONS).await?;
    let quotes = Quotes::new(app.pool.clone());
    app.server.add_service(StockDataServiceServer::new(Api::new(
        app.pool.clone(),
        quotes.clone(),
        config.quality,
        config.tracking_capacity,
    )));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    crate::tracking::consume(&mut app, config.tracking_capacity);
    let alpaca = match &config.alpaca {
        Some(alpaca) => {
            let ingest = Ingest::new(app.pool.clone(), quotes, config.quality);
            Some(Alpaca::new(alpaca.clone(), ingest)?)
        }
        None => None,
    };
    Ok(Application {
        service: app,
        alpaca,
    })
}
