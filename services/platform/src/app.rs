//! The skeleton every gRPC service is assembled on.
//!
//! [`ServiceApp::prepare`] connects to the service's database, applies migrations, binds the
//! gRPC and admin listeners and registers the database readiness check. The service then adds
//! its tonic services to [`ServiceApp::server`] and calls [`ServiceApp::run_until_stopped`].

use std::net::SocketAddr;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::config::ServiceConfig;
use crate::db::{self, MigrationError};
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
    /// A listener could not be bound.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// A prepared service: database ready, listeners bound, nothing served yet.
pub struct ServiceApp {
    pub server: GrpcServer,
    pub pool: PgPool,
    pub metrics: Metrics,
}

impl ServiceApp {
    pub async fn prepare(
        config: &ServiceConfig,
        migrations: &Migrator,
    ) -> Result<Self, StartupError> {
        let pool = db::connect(&config.database).await?;
        db::migrate(&pool, migrations).await?;
        let metrics = Metrics::new();
        let server = GrpcServer::bind(config, metrics.clone()).await?;
        server
            .readiness()
            .add_check("database", db::readiness_check(pool.clone()));
        Ok(Self {
            server,
            pool,
            metrics,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    /// Serves until `shutdown` fires, then drains (see [`GrpcServer::serve`]) and closes the pool.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let result = self.server.serve(shutdown).await;
        self.pool.close().await;
        result
    }
}
