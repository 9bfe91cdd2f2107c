//! Configuration of the gateway.

use std::net::SocketAddr;
use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ShutdownConfig, TelemetryConfig};

pub const NAME: &str = "mirai-gateway";

/// Where each upstream service listens.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub user: String,
    pub stock_data: String,
    pub prediction: String,
    pub analytics: String,
    pub notification: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Public API listener (`MIRAI_HTTP_ADDR`, default 0.0.0.0:8080).
    pub http_addr: SocketAddr,
    /// Admin listener (`MIRAI_ADMIN_ADDR`, default 0.0.0.0:9090).
    pub admin_addr: SocketAddr,
    /// `MIRAI_{USER,STOCK_DATA,PREDICTION,ANALYTICS,NOTIFICATION}_URL`.
    pub upstreams: Upstreams,
    /// Deadline given to each upstream call (`MIRAI_UPSTREAM_TIMEOUT`, default 5 s).
    pub upstream_timeout: Duration,
    /// `iss` access tokens must carry (`MIRAI_JWT_ISSUER`, default `https://mirai.local`; the
    /// user service's setting of the same name).
    pub jwt_issuer: String,
    /// `aud` access tokens must carry (`MIRAI_JWT_AUDIENCE`, default `mirai-api`).
    pub jwt_audience: String,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
}

fn url(env: &Env, name: &str, default_port: u16) -> Result<String, ConfigError> {
    let value = env.or(name, format!("http://127.0.0.1:{default_port}"))?;
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            name: name.to_owned(),
            reason: "expected an http:// or https:// URL".to_owned(),
        });
    }
    Ok(value)
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http_addr: env.or("MIRAI_HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            admin_addr: env.or("MIRAI_ADMIN_ADDR", SocketAddr::from(([0, 0, 0, 0], 9090)))?,
            upstreams: Upstreams {
                user: url(env, "MIRAI_USER_URL", 50051)?,
                stock_data: url(env, "MIRAI_STOCK_DATA_URL", 50052)?,
                prediction: url(env, "MIRAI_PREDICTION_URL", 50053)?,
                analytics: url(env, "MIRAI_ANALYTICS_URL", 50054)?,
                notification: url(env, "MIRAI_NOTIFICATION_URL", 50055)?,
            },
            upstream_timeout: env.duration_or("MIRAI_UPSTREAM_TIMEOUT", Duration::from_secs(5))?,
            jwt_issuer: env.or("MIRAI_JWT_ISSUER", "https://mirai.local".to_owned())?,
            jwt_audience: env.or("MIRAI_JWT_AUDIENCE", "mirai-api".to_owned())?,
            shutdown: ShutdownConfig::from_env(env)?,
            telemetry: TelemetryConfig::from_env(env, NAME)?,
        })
    }
}

impl Settings for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_urls() {
        let config = Config::from_env(&Env::default()).unwrap();
        assert_eq!(config.http_addr.port(), 8080);
        assert_eq!(config.upstreams.notification, "http://127.0.0.1:50055");
        let err =
            Config::from_env(&Env::from_pairs([("MIRAI_USER_URL", "user:50051")])).unwrap_err();
        assert!(
            err.to_string().starts_with("MIRAI_USER_URL is invalid"),
            "{err}"
        );
    }
}
