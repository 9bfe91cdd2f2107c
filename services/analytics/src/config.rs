//! Configuration of `mirai-analytics`.
//!
//! Read once from the environment by [`from_env`]; tests build [`Config`] directly
//! ([`Config::for_tests`]). Every variable is listed in the README.

use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults, TelemetryConfig};
use mirai_platform::grpc::client::{ClientConfig, Target};

/// Name and default ports (see ARCHITECTURE.md "Default ports").
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    name: "mirai-analytics",
    grpc_port: 50054,
    admin_port: 9094,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// `MIRAI_STOCK_DATA_URL`: the stock-data service, read for backfills (default
    /// `http://127.0.0.1:50052`; a list or `dns:///host:port` balances over replicas);
    /// `MIRAI_STOCK_DATA_TIMEOUT`: deadline of each call (default 10 s; a page is up to 10,000
    /// bars); the client's resilience knobs (`MIRAI_CLIENT_*`, see the README).
    pub stock_data: ClientConfig,
    /// `MIRAI_PREDICTION_URL`: the prediction service, read for model reports (default
    /// `http://127.0.0.1:50053`); `MIRAI_PREDICTION_TIMEOUT` (default 10 s).
    pub prediction: ClientConfig,
    /// `MIRAI_BACKFILL_ON_START`: catch the read model up from stock-data when the service
    /// starts, for every symbol it or stock-data knows (default on).
    pub backfill_on_start: bool,
    /// `MIRAI_BACKFILL_PAGE`: bars per `GetBars` page (default 10,000, stock-data's maximum).
    pub backfill_page: u32,
    /// Report jobs.
    pub reports: ReportSettings,
}

/// The report worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReportSettings {
    /// `MIRAI_REPORT_WORKERS`: jobs generated at once by this replica (default 2: charts are
    /// CPU-bound and the machines have few cores).
    pub workers: usize,
    /// `MIRAI_REPORT_POLL`: how often the queue is checked when no job was just created here
    /// (default 1 s; another replica's jobs are picked up within it).
    pub poll: Duration,
    /// `MIRAI_REPORT_TIMEOUT`: a job still RUNNING after this is marked FAILED, whether its
    /// worker is slow or gone (default 2 min).
    pub timeout: Duration,
    /// `MIRAI_REPORT_RETENTION`: finished jobs and their files are deleted this long after
    /// they finish (default 30 days); `expires_at` tells the user.
    pub retention: Duration,
    /// `MIRAI_REPORT_MAX_PENDING`: reports a user may have queued or running (default 3).
    pub max_pending: u32,
    /// `MIRAI_REPORT_MAX_STORED`: reports a user may keep, queued to finished (default 50;
    /// they expire after the retention, or are deleted).
    pub max_stored: u32,
    /// `MIRAI_REPORT_MAX_STORED_BYTES`: bytes of report files a user may keep (default
    /// 200 MiB).
    pub max_stored_bytes: u64,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(120),
            retention: Duration::from_secs(30 * 24 * 3600),
            max_pending: 3,
            max_stored: 50,
            max_stored_bytes: 200 * 1024 * 1024,
        }
    }
}

impl Settings for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.service.telemetry
    }
}

impl Config {
    /// Defaults around a given service configuration.
    pub fn with_service(service: ServiceConfig) -> Self {
        Self {
            service,
            stock_data: ClientConfig::for_url("http://127.0.0.1:50052", Duration::from_secs(10)),
            prediction: ClientConfig::for_url("http://127.0.0.1:50053", Duration::from_secs(10)),
            backfill_on_start: true,
            backfill_page: 10_000,
            reports: ReportSettings::default(),
        }
    }

    /// Test configuration: loopback listeners on port 0, the given database, the test emulator,
    /// stock-data at `stock_data_url`, a fast report poll.
    pub fn for_tests(database_url: &str, stock_data_url: &str) -> Self {
        let mut config = Self::with_service(ServiceConfig::for_tests(DEFAULTS.name, database_url));
        config.stock_data.target = Target::Static(vec![stock_data_url.to_owned()]);
        config.reports.poll = Duration::from_millis(100);
        config
    }
}

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    let service = ServiceConfig::from_env(env, DEFAULTS)?;
    let d = Config::with_service(service.clone());
    let reports = ReportSettings {
        workers: env.or("MIRAI_REPORT_WORKERS", d.reports.workers)?,
        poll: env.duration_or("MIRAI_REPORT_POLL", d.reports.poll)?,
        timeout: env.duration_or("MIRAI_REPORT_TIMEOUT", d.reports.timeout)?,
        retention: env.duration_or("MIRAI_REPORT_RETENTION", d.reports.retention)?,
        max_pending: env.or("MIRAI_REPORT_MAX_PENDING", d.reports.max_pending)?,
        max_stored: env.or("MIRAI_REPORT_MAX_STORED", d.reports.max_stored)?,
        max_stored_bytes: env.or("MIRAI_REPORT_MAX_STORED_BYTES", d.reports.max_stored_bytes)?,
    };
    if !(1..=64).contains(&reports.workers) {
        return Err(ConfigError::Invalid {
            name: "MIRAI_REPORT_WORKERS".into(),
            reason: "expected 1 to 64 workers".into(),
        });
    }
    for (name, value) in [
        ("MIRAI_REPORT_TIMEOUT", reports.timeout),
        ("MIRAI_REPORT_POLL", reports.poll),
    ] {
        if value.is_zero() {
            return Err(ConfigError::Invalid {
                name: name.into(),
                reason: "must be positive".into(),
            });
        }
    }
    Ok(Config {
        stock_data: ClientConfig::from_env(
            env,
            "STOCK_DATA",
            "http://127.0.0.1:50052",
            env.duration_or("MIRAI_STOCK_DATA_TIMEOUT", d.stock_data.timeout)?,
        )?,
        prediction: ClientConfig::from_env(
            env,
            "PREDICTION",
            "http://127.0.0.1:50053",
            env.duration_or("MIRAI_PREDICTION_TIMEOUT", d.prediction.timeout)?,
        )?,
        backfill_on_start: env.or("MIRAI_BACKFILL_ON_START", d.backfill_on_start)?,
        backfill_page: match env.or("MIRAI_BACKFILL_PAGE", d.backfill_page)? {
            page @ 1..=10_000 => page,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "MIRAI_BACKFILL_PAGE".into(),
                    reason: "expected 1 to 10000 bars".into(),
                });
            }
        },
        reports,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("DATABASE_URL", "postgres://localhost/db"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn defaults_apply() {
        let config = from_env(&env(&[])).unwrap();
        assert_eq!(
            config.stock_data.target.to_string(),
            "http://127.0.0.1:50052"
        );
        assert_eq!(
            config.prediction.target.to_string(),
            "http://127.0.0.1:50053"
        );
        assert_eq!(config.reports, ReportSettings::default());
        assert!(config.backfill_on_start);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("MIRAI_STOCK_DATA_URL", "127.0.0.1:50052"),
            ("MIRAI_PREDICTION_URL", "grpc://x"),
            ("MIRAI_REPORT_TIMEOUT", "soon"),
            ("MIRAI_REPORT_TIMEOUT", "0s"),
            ("MIRAI_REPORT_WORKERS", "0"),
            ("MIRAI_BACKFILL_ON_START", "maybe"),
        ] {
            let err = from_env(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
    }
}
