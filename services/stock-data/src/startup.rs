//! Assembly of `mirai-stock-data`.

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_proto::stock::v1::stock_data_service_server::StockDataServiceServer;
use sqlx::migrate::Migrator;

use crate::api::Api;
use mirai_platform::config::ServiceConfig;

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Prepares the database and listeners and registers the service's gRPC services.
pub async fn build(config: &ServiceConfig) -> Result<ServiceApp, StartupError> {
    let mut app = ServiceApp::prepare(config, &MIGRATIONS).await?;
    app.server
        .add_service(StockDataServiceServer::new(Api::new(app.pool.clone())));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    Ok(app)
}
