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

use std::future::Future;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env, TelemetryConfig};

/// Exit status for configuration errors (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

/// Configuration types expose their telemetry block to the bootstrap.
pub trait Settings {
    fn telemetry(&self) -> &TelemetryConfig;
}

/// Loads config, starts telemetry, runs the application until it returns, flushes telemetry.
pub fn run<C, Load, App, Fut>(load: Load, app: App) -> ExitCode
where
    C: Settings,
    Load: FnOnce(&Env) -> Result<C, ConfigError>,
    App: FnOnce(C, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let binary = std::env::args()
        .next()
        .and_then(|arg| {
            std::path::Path::new(&arg)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "mirai".to_owned());
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
    runtime.block_on(async move {
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
    })
}
