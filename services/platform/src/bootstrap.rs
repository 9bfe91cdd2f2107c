//! The `main` of every binary.
//!
//! ```ignore
//! fn main() -> std::process::ExitCode {
//!     mirai_platform::bootstrap::run(Config::from_env, |config, shutdown| async move {
//!         Application::build(config).await?.run_until_stopped(shutdown).await
//!     })
//! }
//! ```
//! Configuration errors print one line naming the variable and exit with status 78
//! (`EX_CONFIG`) before anything starts; runtime failures are logged and exit with 1.
//!
//! Services start through [`run_service`], which also understands two one-shot modes for
//! deployment hooks (a Kubernetes Job before the rollout): `--migrate-only` applies the
//! service's migrations and exits; `--provision-only` creates its Pub/Sub topics,
//! subscriptions and dead-letter topics and exits. Neither binds a port or needs anything but
//! the database URL or the Pub/Sub settings.

use std::future::Future;
use std::process::ExitCode;

use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env, ServiceConfig, TelemetryConfig};

/// Exit status for configuration errors (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;
/// Exit status for a bad command line (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;

/// What a service binary was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Serve,
    MigrateOnly,
    ProvisionOnly,
}

impl Mode {
    /// The mode the arguments (after the program name) ask for.
    pub fn from_args(args: &[String], one_shots: bool) -> Result<Self, String> {
        match args {
            [] => Ok(Self::Serve),
            [flag] if one_shots && flag == "--migrate-only" => Ok(Self::MigrateOnly),
            [flag] if one_shots && flag == "--provision-only" => Ok(Self::ProvisionOnly),
            _ if one_shots => Err(format!(
                "unexpected arguments {args:?}; usage: [--migrate-only | --provision-only] (configuration comes from the environment)"
            )),
            _ => Err(format!(
                "unexpected arguments {args:?}; this binary takes none (configuration comes from the environment)"
            )),
        }
    }
}

/// Configuration types expose their telemetry block to the bootstrap.
pub trait Settings {
    fn telemetry(&self) -> &TelemetryConfig;
}

/// Loads config, starts telemetry, runs the application until it returns, flushes telemetry.
/// For binaries without a database (the gateway); services use [`run_service`].
pub fn run<C, Load, App, Fut>(load: Load, app: App) -> ExitCode
where
    C: Settings,
    Load: FnOnce(&Env) -> Result<C, ConfigError>,
    App: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Err(usage) = Mode::from_args(&args(), false) {
        eprintln!("{}: {usage}", binary());
        return ExitCode::from(EXIT_USAGE);
    }
    start(load, app)
}

/// [`run`] for a service: `service` picks the shared service block out of its configuration
/// and `migrations` is its schema, for the `--migrate-only` and `--provision-only` modes.
pub fn run_service<C, Load, App, Fut>(
    load: Load,
    service: fn(&C) -> &ServiceConfig,
    migrations: &'static Migrator,
    app: App,
) -> ExitCode
where
    C: Settings,
    Load: FnOnce(&Env) -> Result<C, ConfigError>,
    App: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mode = match Mode::from_args(&args(), true) {
        Ok(mode) => mode,
        Err(usage) => {
            eprintln!("{}: {usage}", binary());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match mode {
        Mode::Serve => start(load, app),
        Mode::MigrateOnly => start(load, move |config: C, _| async move {
            let config = service(&config);
            let pool = crate::db::connect(&config.database).await?;
            crate::db::migrate(&pool, migrations).await?;
            tracing::info!(message = "Migrations applied.");
            pool.close().await;
            Ok(())
        }),
        Mode::ProvisionOnly => start(load, move |config: C, _| async move {
            let config = service(&config);
            let subscriptions = crate::events::topology::subscriptions_of(config.consumer_name());
            crate::events::topology::provision(
                &config.pubsub,
                &subscriptions,
                crate::events::topology::DeliveryPolicy::default(),
            )
            .await?;
            tracing::info!(
                message = "Pub/Sub topics and subscriptions provisioned.",
                subscriptions = subscriptions.len()
            );
            Ok(())
        }),
    }
}

fn args() -> Vec<String> {
    std::env::args().skip(1).collect()
}

fn binary() -> String {
    std::env::args()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "mirai".to_owned())
}

fn start<C, Load, App, Fut>(load: Load, app: App) -> ExitCode
where
    C: Settings,
    Load: FnOnce(&Env) -> Result<C, ConfigError>,
    App: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let binary = binary();
    let config = match load(&Env::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{binary}: configuration error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{binary}: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let guard = match crate::telemetry::init(config.telemetry()) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("{binary}: telemetry error: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let shutdown = CancellationToken::new();
        crate::shutdown::cancel_on_signal(shutdown.clone());
        let code = match app(config, shutdown).await {
            Ok(()) => {
                tracing::info!(message = "Stopped cleanly.");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!(
                    message = "Stopped with an error.",
                    error = format!("{error:#}")
                );
                ExitCode::FAILURE
            }
        };
        // Flushing may block on the exporter; keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(guard)).await;
        code
    });
    // A blocking call still running (a DNS lookup, a hash) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn one_shot_modes_parse_for_services_only() {
        assert_eq!(Mode::from_args(&args(&[]), true), Ok(Mode::Serve));
        assert_eq!(
            Mode::from_args(&args(&["--migrate-only"]), true),
            Ok(Mode::MigrateOnly)
        );
        assert_eq!(
            Mode::from_args(&args(&["--provision-only"]), true),
            Ok(Mode::ProvisionOnly)
        );
        assert!(Mode::from_args(&args(&["--migrate-only", "--provision-only"]), true).is_err());
        assert!(Mode::from_args(&args(&["--serve"]), true).is_err());
        assert!(Mode::from_args(&args(&["--migrate-only"]), false).is_err());
    }
}
