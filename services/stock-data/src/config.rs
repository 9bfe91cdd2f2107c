//! Configuration of `mirai-stock-data`.
//!
//! Read once from the environment by [`from_env`]; tests build [`Config`] directly
//! ([`Config::for_tests`]). Every variable is listed in the README.

use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults, TelemetryConfig};
use mirai_platform::leader::LeaderElection;
use secrecy::SecretString;

use crate::quality;

/// Name and default ports (see ARCHITECTURE.md "Default ports").
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    name: "mirai-stock-data",
    grpc_port: 50052,
    admin_port: 9092,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// `MIRAI_SAMPLE_DATA`: list `SPX` and load the bundled S&P 500 daily history at start
    /// (idempotent; `scripts/dev-up` turns it on). Default off.
    pub sample_data: bool,
    /// `MIRAI_QUALITY_OUTLIER_WINDOW`, `MIRAI_QUALITY_OUTLIER_MIN_WINDOW`,
    /// `MIRAI_QUALITY_OUTLIER_Z`: the outlier-return check.
    pub quality: quality::Settings,
    /// `MIRAI_TRACKING_CAPACITY`: most symbols tracked at once (default 10,000); a new symbol
    /// beyond it is refused (`TRACKING_REJECTION_CAPACITY`).
    pub tracking_capacity: u32,
    /// `MIRAI_BARS_CACHE_BARS`: bars kept in memory as pages of `GetBars` answers (default
    /// 200,000, about 40 MB; 0 turns the cache off). See [`crate::bars_cache`].
    pub bars_cache_bars: u64,
    /// The live Alpaca adapter; `None` (the default) unless `MIRAI_ALPACA_ENABLED=true`.
    pub alpaca: Option<AlpacaConfig>,
    /// `MIRAI_LEADER_BACKEND` and `MIRAI_LEADER_*`: which replica runs the live adapter and
    /// the replay feed (a Kubernetes Lease in a cluster, a PostgreSQL advisory lock otherwise).
    /// Off (every replica runs them) in [`Config::with_service`].
    pub leader: LeaderElection,
}

impl Settings for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.service.telemetry
    }
}

impl Config {
    /// Defaults around a given service configuration (tests, and `startup::build`).
    pub fn with_service(service: ServiceConfig) -> Self {
        Self {
            service,
            sample_data: false,
            quality: quality::Settings::default(),
            tracking_capacity: 10_000,
            bars_cache_bars: 200_000,
            alpaca: None,
            leader: LeaderElection::disabled(DEFAULTS.name),
        }
    }

    /// Test configuration: loopback listeners on port 0, the given database, the test emulator.
    pub fn for_tests(database_url: &str) -> Self {
        Self::with_service(ServiceConfig::for_tests(DEFAULTS.name, database_url))
    }
}

/// The Alpaca Market Data API v2 (stocks): REST for history and backfill, WebSocket for live
/// minute bars and trades.
#[derive(Debug, Clone)]
pub struct AlpacaConfig {
    /// `MIRAI_ALPACA_DATA_URL`, default `https://data.alpaca.markets` (REST).
    pub data_url: String,
    /// `MIRAI_ALPACA_STREAM_URL`, default `wss://stream.data.alpaca.markets` (the stream is
    /// `{stream_url}/v2/{feed}`).
    pub stream_url: String,
    /// `MIRAI_ALPACA_FEED`: `iex` (default, the free plan), `sip`, `delayed_sip` or `test`.
    pub feed: String,
    /// `MIRAI_ALPACA_KEY_ID` or a file named by `MIRAI_ALPACA_KEY_ID_FILE`.
    pub key_id: SecretString,
    /// `MIRAI_ALPACA_SECRET_KEY` or a file named by `MIRAI_ALPACA_SECRET_KEY_FILE`.
    pub secret_key: SecretString,
    /// `MIRAI_ALPACA_SYMBOLS`: comma-separated tickers to stream; empty (default) streams the
    /// tracked-symbol set, re-read at every (re)connect and every `refresh`.
    pub symbols: Vec<String>,
    /// `MIRAI_ALPACA_REFRESH`: how often the tracked set is re-read to subscribe newly tracked
    /// symbols (default 60 s).
    pub refresh: Duration,
    /// `MIRAI_ALPACA_RATE_LIMIT`: REST requests per minute (default 200, the free plan's).
    pub requests_per_minute: u32,
    /// `MIRAI_ALPACA_TIMEOUT`: per REST request (default 10 s).
    pub request_timeout: Duration,
    /// `MIRAI_ALPACA_BACKOFF_BASE` / `MIRAI_ALPACA_BACKOFF_MAX`: reconnect delays, full jitter
    /// over `min(max, base·2^attempt)` (defaults 1 s / 60 s).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `MIRAI_ALPACA_BACKFILL_MAX`: how far back a backfill after a (re)connect reaches at
    /// most (default 24 h).
    pub backfill_max: Duration,
    /// `MIRAI_PRICE_COALESCE`: trades of a symbol within this interval become one
    /// `stock.price.updated` (default 250 ms).
    pub price_coalesce: Duration,
}

impl AlpacaConfig {
    /// A configuration against local test servers, with short delays.
    pub fn for_tests(data_url: String, stream_url: String) -> Self {
        Self {
            data_url,
            stream_url,
            feed: "iex".to_owned(),
            key_id: SecretString::from("test-key"),
            secret_key: SecretString::from("test-secret"),
            symbols: Vec::new(),
            refresh: Duration::from_secs(60),
            requests_per_minute: 200,
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            backfill_max: Duration::from_secs(24 * 3600),
            price_coalesce: Duration::from_millis(50),
        }
    }

    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let secret = |name: &str| -> Result<SecretString, ConfigError> {
            let file_var = format!("{name}_FILE");
            match env.get(&file_var) {
                Some(path) => std::fs::read_to_string(path.trim())
                    .map(|s| SecretString::from(s.trim().to_owned()))
                    .map_err(|e| ConfigError::Invalid {
                        name: file_var.clone(),
                        reason: format!("cannot read the file: {e}"),
                    }),
                None => env.secret(name),
            }
        };
        let feed: String = env.or("MIRAI_ALPACA_FEED", "iex".to_owned())?;
        if !matches!(feed.as_str(), "iex" | "sip" | "delayed_sip" | "test") {
            return Err(ConfigError::Invalid {
                name: "MIRAI_ALPACA_FEED".into(),
                reason: format!("expected iex, sip, delayed_sip or test, got `{feed}`"),
            });
        }
        let url = |name: &str, default: &str, schemes: &[&str]| -> Result<String, ConfigError> {
            let value: String = env.or(name, default.to_owned())?;
            let value = value.trim_end_matches('/').to_owned();
            if schemes
                .iter()
                .any(|s| value.starts_with(&format!("{s}://")))
            {
                Ok(value)
            } else {
                Err(ConfigError::Invalid {
                    name: name.to_owned(),
                    reason: format!("expected a {} URL", schemes.join(" or ")),
                })
            }
        };
        let symbols: String = env.or("MIRAI_ALPACA_SYMBOLS", String::new())?;
        let symbols = symbols
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .map(|s| {
                crate::domain::Ticker::parse(&s)
                    .map(|t| t.as_str().to_owned())
                    .map_err(|_| ConfigError::Invalid {
                        name: "MIRAI_ALPACA_SYMBOLS".into(),
                        reason: format!("`{s}` is not a ticker"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let requests_per_minute: u32 = env.or("MIRAI_ALPACA_RATE_LIMIT", 200)?;
        if requests_per_minute == 0 {
            return Err(ConfigError::Invalid {
                name: "MIRAI_ALPACA_RATE_LIMIT".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            data_url: url(
                "MIRAI_ALPACA_DATA_URL",
                "https://data.alpaca.markets",
                &["https", "http"],
            )?,
            stream_url: url(
                "MIRAI_ALPACA_STREAM_URL",
                "wss://stream.data.alpaca.markets",
                &["wss", "ws"],
            )?,
            feed,
            key_id: secret("MIRAI_ALPACA_KEY_ID")?,
            secret_key: secret("MIRAI_ALPACA_SECRET_KEY")?,
            symbols,
            refresh: env.duration_or("MIRAI_ALPACA_REFRESH", Duration::from_secs(60))?,
            requests_per_minute,
            request_timeout: env.duration_or("MIRAI_ALPACA_TIMEOUT", Duration::from_secs(10))?,
            backoff_base: env.duration_or("MIRAI_ALPACA_BACKOFF_BASE", Duration::from_secs(1))?,
            backoff_max: env.duration_or("MIRAI_ALPACA_BACKOFF_MAX", Duration::from_secs(60))?,
            backfill_max: env
                .duration_or("MIRAI_ALPACA_BACKFILL_MAX", Duration::from_secs(24 * 3600))?,
            price_coalesce: env.duration_or("MIRAI_PRICE_COALESCE", Duration::from_millis(250))?,
        })
    }
}

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    let defaults = quality::Settings::default();
    let quality = quality::Settings {
        outlier_window: env.or("MIRAI_QUALITY_OUTLIER_WINDOW", defaults.outlier_window)?,
        outlier_min_window: env.or(
            "MIRAI_QUALITY_OUTLIER_MIN_WINDOW",
            defaults.outlier_min_window,
        )?,
        outlier_z: env.or("MIRAI_QUALITY_OUTLIER_Z", defaults.outlier_z)?,
    };
    if quality.outlier_window < 2 {
        return Err(ConfigError::Invalid {
            name: "MIRAI_QUALITY_OUTLIER_WINDOW".into(),
            reason: "must be at least 2".into(),
        });
    }
    if !(quality.outlier_z.is_finite() && quality.outlier_z > 0.0) {
        return Err(ConfigError::Invalid {
            name: "MIRAI_QUALITY_OUTLIER_Z".into(),
            reason: "must be a positive number".into(),
        });
    }
    Ok(Config {
        service: ServiceConfig::from_env(env, DEFAULTS)?,
        sample_data: env.or("MIRAI_SAMPLE_DATA", false)?,
        quality,
        tracking_capacity: env.or("MIRAI_TRACKING_CAPACITY", 10_000)?,
        bars_cache_bars: env.or("MIRAI_BARS_CACHE_BARS", 200_000)?,
        alpaca: if env.or("MIRAI_ALPACA_ENABLED", false)? {
            Some(AlpacaConfig::from_env(env)?)
        } else {
            None
        },
        leader: LeaderElection::from_env(env, DEFAULTS.name)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("DATABASE_URL", "postgres://localhost/db"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
        ]
    }

    #[test]
    fn the_adapter_is_off_by_default_and_needs_its_keys_when_on() {
        let config = from_env(&Env::from_pairs(base())).unwrap();
        assert!(config.alpaca.is_none());
        assert_eq!(config.quality, quality::Settings::default());

        let mut on = base();
        on.push(("MIRAI_ALPACA_ENABLED", "true"));
        let err = from_env(&Env::from_pairs(on.clone())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MIRAI_ALPACA_KEY_ID is required but not set"
        );

        on.extend([
            ("MIRAI_ALPACA_KEY_ID", "k"),
            ("MIRAI_ALPACA_SECRET_KEY", "hunter2"),
            ("MIRAI_ALPACA_SYMBOLS", "aapl, msft"),
        ]);
        let alpaca = from_env(&Env::from_pairs(on.clone()))
            .unwrap()
            .alpaca
            .unwrap();
        assert_eq!(alpaca.symbols, ["AAPL", "MSFT"]);
        assert_eq!(alpaca.stream_url, "wss://stream.data.alpaca.markets");
        assert!(
            !format!("{alpaca:?}").contains("hunter2"),
            "secrets stay hidden"
        );

        on.push(("MIRAI_ALPACA_FEED", "nasdaq"));
        let err = from_env(&Env::from_pairs(on)).unwrap_err();
        assert!(
            err.to_string().starts_with("MIRAI_ALPACA_FEED is invalid"),
            "{err}"
        );
    }

    #[test]
    fn quality_settings_are_checked() {
        let mut env = base();
        env.push(("MIRAI_QUALITY_OUTLIER_Z", "-1"));
        let err = from_env(&Env::from_pairs(env)).unwrap_err();
        assert!(
            err.to_string().starts_with("MIRAI_QUALITY_OUTLIER_Z"),
            "{err}"
        );
    }
}
