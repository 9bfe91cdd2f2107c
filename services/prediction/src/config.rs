//! Configuration of `mirai-prediction`.
//!
//! Read once from the environment by [`from_env`]; tests build [`Config`] directly
//! ([`Config::for_tests`]). Every variable is listed in the README.

use std::path::PathBuf;
use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults, TelemetryConfig};
use mirai_platform::grpc::client::{ClientConfig, Target};

use crate::inference::engine::BatchSettings;

/// Name and default ports (see ARCHITECTURE.md "Default ports").
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    name: "mirai-prediction",
    grpc_port: 50053,
    admin_port: 9093,
};

/// The models folder of this checkout: the default for local runs and tests. Deployments set
/// `MIRAI_MODELS_DIR` to where the image ships the artifacts.
pub const DEFAULT_MODELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models");

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// `MIRAI_MODELS_DIR`: the folder holding `registry.json` and the version folders.
    pub models_dir: PathBuf,
    /// `MIRAI_MODELS_POLL`: how often the folder is checked for new or changed artifacts
    /// (default 10 s).
    pub models_poll: Duration,
    /// `MIRAI_INFERENCE_BATCH_SIZES`: the pinned batch sizes, one optimised plan each
    /// (default `1,8,64`; 1 is always included).
    pub batch_sizes: Vec<usize>,
    /// `MIRAI_BATCH_MAX_SIZE`, `MIRAI_BATCH_MAX_DELAY`, `MIRAI_INFERENCE_QUEUE`,
    /// `MIRAI_INFERENCE_WORKERS`: the micro-batching queue.
    pub batching: BatchSettings,
    /// `MIRAI_STOCK_DATA_URL`: the stock-data service (default `http://127.0.0.1:50052`; a
    /// comma-separated list or `dns:///host:port` balances over replicas);
    /// `MIRAI_STOCK_DATA_TIMEOUT`: deadline of each call when the incoming call has none
    /// (default 5 s); the client's resilience knobs (`MIRAI_CLIENT_*`, see the README).
    pub stock_data: ClientConfig,
    /// `MIRAI_BAR_CACHE_TTL`: how long a symbol's cached bars are used without asking
    /// stock-data again (default 5 min). `stock.bar.closed` refreshes them sooner; the TTL
    /// covers the events another replica consumed.
    pub bar_cache_ttl: Duration,
    /// `MIRAI_FORECAST_CACHE`: reuse a version's forecast for a symbol while its latest bar is
    /// unchanged (forecasts are deterministic in their inputs); default on.
    pub forecast_cache: bool,
    /// `MIRAI_SHADOW_TIMEOUT`: a shadow run taking longer is abandoned (default 5 s).
    pub shadow_timeout: Duration,
    /// `MIRAI_SHADOW_CONCURRENCY`: shadow runs in flight at most; beyond it they are skipped and
    /// counted (default 256), so a slow shadow cannot pile up work.
    pub shadow_concurrency: usize,
    /// `MIRAI_PREDICTION_RETENTION`: stored predictions older than this are deleted (default
    /// 400 days); scores (no personal data) are kept for the scoreboards.
    pub retention: Duration,
    /// `MIRAI_TRAFFIC_REFRESH`: how often the traffic configuration is re-read from the
    /// database, for changes made through another replica (default 2 s).
    pub traffic_refresh: Duration,
    /// Scoring, degradation and promotion rules.
    pub scoring: ScoringConfig,
}

/// Rolling scoreboard, champion degradation and challenger promotion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoringConfig {
    /// `MIRAI_SCOREBOARD_WINDOW`: matured predictions in the rolling scoreboard (default 250).
    pub window: u32,
    /// `MIRAI_DEGRADED_MAX_MASE`: rolling MASE (MAE / random-walk MAE) above this degrades the
    /// champion (default 1.10).
    pub max_mase: f64,
    /// `MIRAI_DEGRADED_MIN_COVERAGE` / `MIRAI_DEGRADED_MAX_COVERAGE`: rolling interval coverage
    /// outside this range degrades the champion (defaults 0.80 / 0.98, around the nominal 0.90).
    pub min_coverage: f64,
    pub max_coverage: f64,
    /// `MIRAI_DEGRADED_MIN_COUNT`: scored predictions needed before the thresholds apply
    /// (default 60).
    pub min_count: u64,
    /// `MIRAI_PROMOTION_ALPHA`: Diebold–Mariano significance level (default 0.05).
    pub promotion_alpha: f64,
    /// `MIRAI_PROMOTION_MIN_PAIRED`: paired predictions needed before a challenger can be
    /// proposed (default 100).
    pub promotion_min_paired: u64,
    /// `MIRAI_AUTO_PROMOTE`: promote a significantly better challenger automatically instead of
    /// only proposing it (default off).
    pub auto_promote: bool,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            window: 250,
            max_mase: 1.10,
            min_coverage: 0.80,
            max_coverage: 0.98,
            min_count: 60,
            promotion_alpha: 0.05,
            promotion_min_paired: 100,
            auto_promote: false,
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
            models_dir: PathBuf::from(DEFAULT_MODELS_DIR),
            models_poll: Duration::from_secs(10),
            batch_sizes: vec![1, 8, 64],
            batching: BatchSettings::default(),
            stock_data: ClientConfig::for_url("http://127.0.0.1:50052", Duration::from_secs(5)),
            bar_cache_ttl: Duration::from_secs(300),
            forecast_cache: true,
            shadow_timeout: Duration::from_secs(5),
            shadow_concurrency: 256,
            retention: Duration::from_secs(400 * 24 * 3600),
            traffic_refresh: Duration::from_secs(2),
            scoring: ScoringConfig::default(),
        }
    }

    /// Test configuration: loopback listeners on port 0, the given database, the test emulator,
    /// the checkout's models, and stock-data at `stock_data_url`.
    pub fn for_tests(database_url: &str, stock_data_url: &str) -> Self {
        let mut config = Self::with_service(ServiceConfig::for_tests(DEFAULTS.name, database_url));
        config.stock_data.target = Target::Static(vec![stock_data_url.to_owned()]);
        config.models_poll = Duration::from_millis(200);
        config.traffic_refresh = Duration::from_millis(200);
        config
    }
}

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    let service = ServiceConfig::from_env(env, DEFAULTS)?;
    let defaults = Config::with_service(service.clone());
    let invalid = |name: &str, reason: String| ConfigError::Invalid {
        name: name.to_owned(),
        reason,
    };
    let batch_sizes = match env.get("MIRAI_INFERENCE_BATCH_SIZES") {
        None => defaults.batch_sizes.clone(),
        Some(raw) => {
            let sizes: Vec<usize> = raw
                .split(',')
                .map(|s| s.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .map_err(|e| invalid("MIRAI_INFERENCE_BATCH_SIZES", format!("{e}")))?;
            if sizes.is_empty() || sizes.iter().any(|s| !(1..=4096).contains(s)) {
                return Err(invalid(
                    "MIRAI_INFERENCE_BATCH_SIZES",
                    "expected comma-separated sizes between 1 and 4096".into(),
                ));
            }
            sizes
        }
    };
    let batching = BatchSettings {
        max_batch: env.or("MIRAI_BATCH_MAX_SIZE", defaults.batching.max_batch)?,
        max_delay: env.duration_or("MIRAI_BATCH_MAX_DELAY", defaults.batching.max_delay)?,
        queue: env.or("MIRAI_INFERENCE_QUEUE", defaults.batching.queue)?,
        workers: env.or("MIRAI_INFERENCE_WORKERS", defaults.batching.workers)?,
    };
    if batching.max_batch == 0 || batching.queue == 0 || batching.workers == 0 {
        return Err(invalid(
            "MIRAI_BATCH_MAX_SIZE",
            "batch size, queue and workers must all be at least 1".into(),
        ));
    }
    let stock_data = ClientConfig::from_env(
        env,
        "STOCK_DATA",
        "http://127.0.0.1:50052",
        env.duration_or("MIRAI_STOCK_DATA_TIMEOUT", defaults.stock_data.timeout)?,
    )?;
    let d = ScoringConfig::default();
    let scoring = ScoringConfig {
        window: env.or("MIRAI_SCOREBOARD_WINDOW", d.window)?,
        max_mase: env.or("MIRAI_DEGRADED_MAX_MASE", d.max_mase)?,
        min_coverage: env.or("MIRAI_DEGRADED_MIN_COVERAGE", d.min_coverage)?,
        max_coverage: env.or("MIRAI_DEGRADED_MAX_COVERAGE", d.max_coverage)?,
        min_count: env.or("MIRAI_DEGRADED_MIN_COUNT", d.min_count)?,
        promotion_alpha: env.or("MIRAI_PROMOTION_ALPHA", d.promotion_alpha)?,
        promotion_min_paired: env.or("MIRAI_PROMOTION_MIN_PAIRED", d.promotion_min_paired)?,
        auto_promote: env.or("MIRAI_AUTO_PROMOTE", d.auto_promote)?,
    };
    if !(1..=100_000).contains(&scoring.window) {
        return Err(invalid(
            "MIRAI_SCOREBOARD_WINDOW",
            "expected 1 to 100000 predictions".into(),
        ));
    }
    if !(0.0 < scoring.promotion_alpha && scoring.promotion_alpha < 1.0) {
        return Err(invalid(
            "MIRAI_PROMOTION_ALPHA",
            "expected a level in (0, 1)".into(),
        ));
    }
    Ok(Config {
        models_dir: env.or("MIRAI_MODELS_DIR", defaults.models_dir.clone())?,
        models_poll: env.duration_or("MIRAI_MODELS_POLL", defaults.models_poll)?,
        batch_sizes,
        batching,
        stock_data,
        bar_cache_ttl: env.duration_or("MIRAI_BAR_CACHE_TTL", defaults.bar_cache_ttl)?,
        forecast_cache: env.or("MIRAI_FORECAST_CACHE", defaults.forecast_cache)?,
        shadow_timeout: env.duration_or("MIRAI_SHADOW_TIMEOUT", defaults.shadow_timeout)?,
        shadow_concurrency: env.or("MIRAI_SHADOW_CONCURRENCY", defaults.shadow_concurrency)?,
        retention: env.duration_or("MIRAI_PREDICTION_RETENTION", defaults.retention)?,
        traffic_refresh: env.duration_or("MIRAI_TRAFFIC_REFRESH", defaults.traffic_refresh)?,
        scoring,
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
        assert_eq!(config.batch_sizes, vec![1, 8, 64]);
        assert_eq!(config.scoring.window, 250);
        assert!(config.models_dir.ends_with("models"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("MIRAI_INFERENCE_BATCH_SIZES", "1,x"),
            ("MIRAI_INFERENCE_BATCH_SIZES", "0"),
            ("MIRAI_STOCK_DATA_URL", "127.0.0.1:50052"),
            ("MIRAI_BATCH_MAX_DELAY", "soon"),
            ("MIRAI_PROMOTION_ALPHA", "1.5"),
            ("MIRAI_SCOREBOARD_WINDOW", "0"),
        ] {
            let err = from_env(&env(&[(name, value)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}={value}: {err}");
        }
        let config = from_env(&env(&[
            ("MIRAI_INFERENCE_BATCH_SIZES", "1, 16"),
            ("MIRAI_BATCH_MAX_DELAY", "250us"),
        ]))
        .unwrap();
        assert_eq!(config.batch_sizes, vec![1, 16]);
        assert_eq!(config.batching.max_delay, Duration::from_micros(250));
    }
}
