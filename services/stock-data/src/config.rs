//! Configuration of `mirai-stock-data`.

use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults};

/// Name and default ports (see ARCHITECTURE.md "Default ports").
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    name: "mirai-stock-data",
    grpc_port: 50052,
    admin_port: 9092,
};

/// The service needs nothing beyond the shared service configuration yet.
pub type Config = ServiceConfig;

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    ServiceConfig::from_env(env, DEFAULTS)
}
