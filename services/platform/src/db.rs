//! PostgreSQL: the pool, migrations, and error mapping.
//!
//! Each service owns one database and one `migrations/` folder. The platform adds its own
//! migrations (the outbox and inbox tables every service needs) with versions below
//! [`SERVICE_MIGRATIONS_START`]; service migrations use versions from there up. [`migrate`]
//! runs both sets in one ordered list, so one `_sqlx_migrations` table tracks everything.

use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::ExposeSecret as _;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::config::DatabaseConfig;

/// Service migrations must have versions at or above this; platform ones stay below.
pub const SERVICE_MIGRATIONS_START: i64 = 1000;

/// The platform's own migrations (outbox, inbox).
pub static PLATFORM_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// Connects, retrying with capped backoff until `config.connect_timeout`, so a database (or
/// Cloud SQL proxy) that starts a little later than the service does not crash-loop it.
pub async fn connect(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = config.url.expose_secret().parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let give_up = tokio::time::Instant::now() + config.connect_timeout;
    loop {
        // `acquire` itself retries refused connections with backoff until its own timeout.
        let left = give_up.saturating_duration_since(tokio::time::Instant::now());
        let error = match tokio::time::timeout(left, pool.acquire()).await {
            Ok(Ok(_connection)) => return Ok(pool),
            Ok(Err(error)) if is_transient(&error) => error,
            Ok(Err(error)) => return Err(error),
            Err(_) => sqlx::Error::PoolTimedOut,
        };
        if tokio::time::Instant::now() >= give_up {
            return Err(error);
        }
        tracing::warn!(message = "Database not reachable yet; retrying.", %error);
    }
}

fn is_transient(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        || matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("57P03"))
}

/// Errors from [`migrate`].
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A service migration uses a version reserved for the platform (a build defect).
    #[error(
        "service migration {0} is below {SERVICE_MIGRATIONS_START}, which the platform reserves"
    )]
    ReservedVersion(i64),
    /// sqlx failed to apply a migration (bad SQL, checksum mismatch of an applied migration).
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

/// Applies the platform migrations and then `service`'s, idempotently. Concurrent replicas are
/// serialised by sqlx's advisory lock.
pub async fn migrate(pool: &PgPool, service: &Migrator) -> Result<(), MigrationError> {
    if let Some(bad) = service
        .iter()
        .find(|m| m.version < SERVICE_MIGRATIONS_START)
    {
        return Err(MigrationError::ReservedVersion(bad.version));
    }
    let all = PLATFORM_MIGRATIONS
        .iter()
        .chain(service.iter())
        .cloned()
        .collect();
    Migrator::with_migrations(all).run(pool).await?;
    Ok(())
}

/// A `/readyz` check: the pool can run `SELECT 1`.
pub fn readiness_check(
    pool: PgPool,
) -> impl Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// True when `error` is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// `text` escaped for use inside a `LIKE` pattern (PostgreSQL's default escape character,
/// backslash): `%`, `_` and `\` then match themselves instead of acting as wildcards.
pub fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The one mapping from database errors to gRPC statuses:
/// unique violation → `ALREADY_EXISTS` ("`what` already exists"), no row → `NOT_FOUND`,
/// pool exhausted or connection lost → `UNAVAILABLE` (retryable), anything else → `INTERNAL`
/// (logged, never shown to the client).
pub fn status(error: sqlx::Error, what: &str) -> tonic::Status {
    if is_unique_violation(&error) {
        return tonic::Status::already_exists(format!("{what} already exists"));
    }
    match error {
        sqlx::Error::RowNotFound => tonic::Status::not_found(format!("{what} not found")),
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            tracing::warn!(message = "Database unavailable.", %error);
            tonic::Status::unavailable("database temporarily unavailable")
        }
        other => crate::error::internal(other),
    }
}
