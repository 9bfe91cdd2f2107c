//! Assembly of `mirai-analytics`.

use mirai_platform::app::{ServiceApp, StartupError};
use sqlx::migrate::Migrator;

use crate::config::Config;

/// The service's own schema; it owns no tables yet (the platform's outbox and inbox tables
/// are applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = Migrator::DEFAULT;

/// Prepares the database and listeners and registers the service's gRPC services.
pub async fn build(config: &Config) -> Result<ServiceApp, StartupError> {
    let mut app = ServiceApp::prepare(config, &MIGRATIONS).await?;
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    Ok(app)
}
