//! Assembly of `mirai-user`.

use mirai_platform::app::{ServiceApp, StartupError};
use mirai_platform::config::ServiceConfig;
use mirai_proto::user::v1::user_service_server::UserServiceServer;
use sqlx::migrate::Migrator;

use crate::config::AuthConfig;
use crate::context::Context;
use crate::grpc::Api;
use crate::keys::{KeyError, KeyRing};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Database, migrations, Pub/Sub or listeners (see [`StartupError`]).
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The signing-key folder is missing keys or holds unreadable ones.
    #[error("JWT signing keys: {0}")]
    Keys(#[from] KeyError),
    /// The Argon2 parameters are unusable (a configuration defect).
    #[error("password hasher: {0}")]
    Hasher(String),
}

/// The service's own schema (versions from 1000; the platform's outbox and inbox tables are
/// applied by [`ServiceApp::prepare`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Prepares the service with default auth settings (production Argon2 parameters, ephemeral
/// signing keys). The binary uses [`build_with`] and its configured settings.
pub async fn build(config: &ServiceConfig) -> Result<ServiceApp, BuildError> {
    build_with(config, &AuthConfig::defaults()).await
}

/// Prepares the database and listeners, loads the signing keys, registers the gRPC service and
/// the deletion saga (confirmation consumers and the reminder sweep).
pub async fn build_with(
    config: &ServiceConfig,
    auth: &AuthConfig,
) -> Result<ServiceApp, BuildError> {
    let keys = load_keys(auth)?;
    let mut app = ServiceApp::prepare(config, &MIGRATIONS).await?;
    let context = Context::new(app.pool.clone(), auth.clone(), keys).map_err(BuildError::Hasher)?;
    let api = Api::new(context);
    app.server.add_service(UserServiceServer::new(api));
    app.server.add_reflection(mirai_proto::FILE_DESCRIPTOR_SET);
    crate::events::consume(&mut app);
    crate::deletion::sweep(&mut app, &auth.deletion);
    Ok(app)
}

fn load_keys(auth: &AuthConfig) -> Result<KeyRing, KeyError> {
    match &auth.keys.dir {
        Some(dir) => KeyRing::load(
            dir,
            auth.keys.generate,
            auth.keys.retired_grace,
            chrono::Utc::now(),
        ),
        None => {
            tracing::warn!(
                message = "MIRAI_JWT_KEYS_DIR is not set: signing with ephemeral keys. Tokens die with this process and replicas do not share keys; set it in any shared environment."
            );
            Ok(KeyRing::ephemeral())
        }
    }
}
