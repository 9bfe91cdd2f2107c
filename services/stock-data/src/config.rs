//! Configuration of `mirai-stock-data`.

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults, TelemetryConfig};

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
}

impl Settings for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.service.telemetry
    }
}

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    Ok(Config {
        service: ServiceConfig::from_env(env, DEFAULTS)?,
        sample_data: env.or("MIRAI_SAMPLE_DATA", false)?,
    })
}
