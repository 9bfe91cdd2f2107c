//! PostgreSQL: the pool, migrations, and error mapping.
//!
//! Each service owns one database and one `migrations/` folder. The platform adds its own
//! migrations (the outbox and inbox tables every service needs) with versions below
//! [`SERVICE_MIGRATIONS_START`]; service migrations use versions from there up. [`migrate`]
//! runs both sets in one ordered list, so one `_sqlx_migrations` table tracks everything.

use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use secrecy::ExposeSecret as _;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;
use crate::telemetry::Metrics;

pub mod copy;

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

/// A `LISTEN` connection on `channel`, or `None` (logged) when it cannot be had; callers poll
/// meanwhile and try again later.
///
/// The connection is not taken from `pool`: a listener holds its connection for good, and a
/// service with several listeners would otherwise starve its own pool (notification's four
/// listeners left one connection of a pool of five for everything else). Each listener opens
/// one connection of its own with `pool`'s options and reconnects by itself.
pub async fn listen(pool: &PgPool, channel: &str) -> Option<sqlx::postgres::PgListener> {
    let connect = async {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with((*pool.connect_options()).clone())
            .await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
        // Nobody closes the listener's own pool; it goes with the listener.
        listener.ignore_pool_close_event(true);
        listener.listen(channel).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match connect.await {
        Ok(listener) => Some(listener),
        Err(error) => {
            tracing::warn!(message = "LISTEN failed; polling meanwhile.", channel, %error);
            None
        }
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

/// How often [`PoolMetrics::run`] samples the pool.
pub const POOL_SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// The connection pool as gauges: `mirai_db_pool_connections{state="in_use"|"idle"}` and
/// `mirai_db_pool_max_connections`; saturation is in_use / max (at 1, callers wait up to the
/// acquire timeout, then get UNAVAILABLE).
#[derive(Clone)]
pub struct PoolMetrics {
    connections: Family<PoolStateLabels, Gauge>,
    max: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    state: &'static str,
}

impl PoolMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            connections: metrics.register(
                "db_pool_connections",
                "Open database connections of the pool, by state (in_use, idle).",
                Family::default(),
            ),
            max: metrics.register(
                "db_pool_max_connections",
                "Largest number of connections the pool opens (MIRAI_DB_MAX_CONNECTIONS).",
                Gauge::default(),
            ),
        }
    }

    /// Sets the gauges from the pool's current state.
    pub fn sample(&self, pool: &PgPool) {
        let open = i64::from(pool.size());
        let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX).min(open);
        self.connections
            .get_or_create(&PoolStateLabels { state: "in_use" })
            .set(open - idle);
        self.connections
            .get_or_create(&PoolStateLabels { state: "idle" })
            .set(idle);
        self.max
            .set(i64::from(pool.options().get_max_connections()));
    }

    /// Samples every [`POOL_SAMPLE_INTERVAL`] until `stop` fires.
    pub async fn run(self, pool: PgPool, stop: CancellationToken) {
        let mut tick = tokio::time::interval(POOL_SAMPLE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample(&pool),
                () = stop.cancelled() => return,
            }
        }
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
    match code(&error) {
        tonic::Code::AlreadyExists => {
            tonic::Status::already_exists(format!("{what} already exists"))
        }
        tonic::Code::NotFound => tonic::Status::not_found(format!("{what} not found")),
        tonic::Code::Unavailable => {
            tracing::warn!(message = "Database unavailable.", %error);
            tonic::Status::unavailable("database temporarily unavailable")
        }
        _ => crate::error::internal(error),
    }
}

/// The code [`status`] gives `error`.
pub fn code(error: &sqlx::Error) -> tonic::Code {
    if is_unique_violation(error) {
        return tonic::Code::AlreadyExists;
    }
    match error {
        sqlx::Error::RowNotFound => tonic::Code::NotFound,
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            tonic::Code::Unavailable
        }
        _ => tonic::Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[tokio::test]
    async fn pool_metrics_report_connections_in_use_idle_and_the_maximum() {
        let db = TestDatabase::create("pool_metrics").await;
        let pool = PgPoolOptions::new()
            .max_connections(3)
            .connect(db.url())
            .await
            .expect("connect");
        let metrics = Metrics::new();
        let gauges = PoolMetrics::register(&metrics);

        let first = pool.acquire().await.expect("acquire");
        let second = pool.acquire().await.expect("acquire");
        gauges.sample(&pool);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "mirai_db_pool_connections{state=\"in_use\"}"),
            Some("mirai_db_pool_connections{state=\"in_use\"} 2"),
            "{text}"
        );
        assert_eq!(
            line(&text, "mirai_db_pool_max_connections "),
            Some("mirai_db_pool_max_connections 3"),
            "{text}"
        );

        drop((first, second));
        // A dropped connection goes back to the pool on a spawned task.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while pool.num_idle() < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gauges.sample(&pool);
        let text = metrics.encode();
        assert_eq!(
            line(&text, "mirai_db_pool_connections{state=\"in_use\"}"),
            Some("mirai_db_pool_connections{state=\"in_use\"} 0"),
            "{text}"
        );
        assert_eq!(
            line(&text, "mirai_db_pool_connections{state=\"idle\"}"),
            Some("mirai_db_pool_connections{state=\"idle\"} 2"),
            "{text}"
        );
    }
}
