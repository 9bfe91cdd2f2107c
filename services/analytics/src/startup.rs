//! Assembly of `mirai-analytics`.

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_proto::analytics::v1::analytics_service_server::AnalyticsServiceServer;
use sqlx::migrate::Migrator;

use crate::api::Api;
use crate::config::Config;

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Prepares the database and listeners, registers the gRPC services and the event consumers.
pub async fn build(config: &Config) -> Result<ServiceApp, StartupError> {
    let mut app = ServiceApp::prepare(config, &MIGRATIONS).await?;
    app.server
        .add_service(AnalyticsServiceServer::new(Api::new(app.pool.clone())));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    crate::symbols::consume(&mut app);
    Ok(app)
}
