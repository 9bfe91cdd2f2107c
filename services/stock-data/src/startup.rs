//! Assembly of `mirai-stock-data`.

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_platform::config::ServiceConfig;
use mirai_platform::leader::{self, Elector, LeaderError, LeaseName};
use mirai_proto::stock::v1::stock_data_service_server::StockDataServiceServer;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::bars_cache::BarsCache;
use crate::config::Config;
use crate::grpc::Api;
use crate::ingest::Ingest;
use crate::quotes::Quotes;
use crate::replay::Replays;
use crate::vendor::alpaca::Alpaca;

/// The lease whose holder runs the live vendor adapter and the replay feed.
pub const FEEDS_LEASE: &str = "mirai-stock-data-feeds";

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
    /// The leader elector could not be built (in-cluster Kubernetes configuration).
    #[error("leader election: {0}")]
    Leader(#[from] LeaderError),
}

/// The assembled service: the platform skeleton, with the feeds (the live vendor adapter, if
/// configured, and the replay feed) running on the leader replica.
pub struct Application {
    pub service: ServiceApp,
}

impl Application {
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.service.pool
    }

    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.service.grpc_addr()
    }

    /// Serves until `shutdown`; the feeds stop with it and the lease is released.
    pub async fn run_until_stopped(
        self,
        shutdown: CancellationToken,
    ) -> Result<(), mirai_platform::grpc::ServeError> {
        self.service.run_until_stopped(shutdown).await
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
/// and runs the feeds (the vendor adapter when configured, the replay feed) while this replica
/// holds [`FEEDS_LEASE`].
pub async fn build_with(config: &Config) -> Result<Application, BuildError> {
    let mut app = ServiceApp::prepare(&config.service, &MIGRATIONS).await?;
    let quotes = Quotes::new(app.pool.clone()).with_metrics(&app.metrics);
    let replays = Replays::new(app.pool.clone(), quotes.clone());
    let bars_cache = BarsCache::new(config.bars_cache_bars, &app.metrics);
    app.server.add_service(StockDataServiceServer::new(Api::new(
        app.pool.clone(),
        quotes.clone(),
        replays.clone(),
        config.quality,
        config.tracking_capacity,
        bars_cache.clone(),
    )));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    crate::events::consume(&mut app, config.tracking_capacity);
    let alpaca = match &config.alpaca {
        Some(alpaca) => {
            let ingest = Ingest::new(app.pool.clone(), quotes, config.quality)
                .with_bars_cache(bars_cache.clone());
            Some(Alpaca::new(alpaca.clone(), ingest)?)
        }
        None => None,
    };
    let pool = app.pool.clone();
    app.background("bars cache", move |stop| {
        Box::pin(async move { bars_cache.follow(pool, stop).await })
    });
    let freshness = crate::freshness::Freshness::register(app.pool.clone(), &app.metrics);
    app.background("bar freshness", move |stop| Box::pin(freshness.run(stop)));
    let elector = Elector::new(&config.leader, &app.pool, &app.metrics)?;
    app.background("feeds", move |shutdown| {
        Box::pin(async move {
            let lease = LeaseName::parse(FEEDS_LEASE).expect("a valid lease name");
            leader::run_while_leader(&elector, &lease, shutdown, move |leading| {
                let (alpaca, replays) = (alpaca.clone(), replays.clone());
                async move {
                    let adapter = async {
                        if let Some(alpaca) = alpaca {
                            alpaca.run(leading.clone()).await;
                        }
                    };
                    tokio::join!(adapter, replays.lead(leading.clone()));
                }
            })
            .await;
        })
    });
    Ok(Application { service: app })
}
