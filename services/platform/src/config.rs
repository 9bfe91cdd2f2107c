//! Typed configuration, read once at startup.
//!
//! [`Env`] is a snapshot of variables: [`Env::from_process`] in `main`, [`Env::from_pairs`] in
//! tests, so no test ever mutates the process environment. Every accessor names the variable in
//! its error, and secrets never appear in error messages.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::events::pubsub::PubSubConfig;
use crate::grpc::fault::FaultRules;
use crate::grpc::identity::Identity;

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is absent or empty; the operator must set it.
    #[error("{name} is required but not set")]
    Missing { name: String },
    /// A variable is set but cannot be parsed; `reason` says what was expected.
    #[error("{name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Snapshot of the process environment (non-UTF-8 values are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment made of the given pairs (tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value; empty strings count as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A required value parsed with [`FromStr`].
    pub fn required<T>(&self, name: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.get(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
        })?;
        parse(name, raw)
    }

    /// An optional value parsed with [`FromStr`].
    pub fn optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(name).map(|raw| parse(name, raw)).transpose()
    }

    /// A value parsed with [`FromStr`], or `default` when unset.
    pub fn or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.optional(name)?.unwrap_or(default))
    }

    /// A human-readable duration (`250ms`, `30s`, `5m`), or `default` when unset.
    pub fn duration_or(&self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => humantime::parse_duration(raw.trim()).map_err(|e| invalid(name, e)),
        }
    }

    /// A required secret. Its value is never echoed in errors.
    pub fn secret(&self, name: &str) -> Result<SecretString, ConfigError> {
        self.get(name)
            .map(|v| SecretString::from(v.to_owned()))
            .ok_or_else(|| ConfigError::Missing {
                name: name.to_owned(),
            })
    }
}

fn parse<T>(name: &str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    raw.trim().parse().map_err(|e| invalid(name, e))
}

fn invalid(name: &str, reason: impl Display) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.to_string(),
    }
}

// === Shared configuration blocks ===

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (production, default).
    Json,
    /// Human-readable lines for a terminal.
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected `json` or `pretty`, got `{other}`")),
        }
    }
}

/// Telemetry settings (`RUST_LOG`, `MIRAI_LOG_FORMAT`, `OTEL_*`).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` of traces and the `service` field of logs.
    pub service_name: String,
    /// `tracing` filter directives (`RUST_LOG`), default `info`.
    pub log_filter: String,
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint; traces are exported only when set.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    pub fn from_env(env: &Env, service_name: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            service_name: env.or("OTEL_SERVICE_NAME", service_name.to_owned())?,
            log_filter: env.or("RUST_LOG", "info".to_owned())?,
            log_format: env.or("MIRAI_LOG_FORMAT", LogFormat::Json)?,
            otlp_endpoint: env.optional("OTEL_EXPORTER_OTLP_ENDPOINT")?,
        })
    }
}

/// Graceful-shutdown timings.
#[derive(Debug, Clone, Copy)]
pub struct ShutdownConfig {
    /// Time between "readiness off" and closing the listener, so load balancers stop sending
    /// traffic first (`MIRAI_SHUTDOWN_DRAIN_DELAY`, default 0 s: Kubernetes' `preStop` does it).
    pub drain_delay: Duration,
    /// Upper bound for the whole shutdown, in-flight calls included (`MIRAI_SHUTDOWN_GRACE`,
    /// default 20 s, below Kubernetes' default 30 s termination grace period).
    pub grace: Duration,
}

impl ShutdownConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            drain_delay: env.duration_or("MIRAI_SHUTDOWN_DRAIN_DELAY", Duration::ZERO)?,
            grace: env.duration_or("MIRAI_SHUTDOWN_GRACE", Duration::from_secs(20))?,
        })
    }
}

/// PostgreSQL settings (`DATABASE_URL`, `MIRAI_DB_*`).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// Connection URL; a secret because it usually carries a password.
    pub url: SecretString,
    /// Pool size per replica (`MIRAI_DB_MAX_CONNECTIONS`, default 10). Replicas × services ×
    /// this must stay below the server's `max_connections` (100 by default).
    pub max_connections: u32,
    /// How long startup keeps retrying an unreachable server (`MIRAI_DB_CONNECT_TIMEOUT`,
    /// default 30 s), e.g. while the Cloud SQL proxy sidecar starts.
    pub connect_timeout: Duration,
}

impl DatabaseConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let url = env.secret("DATABASE_URL")?;
        let scheme = url.expose_secret().split("://").next().unwrap_or_default();
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err(invalid("DATABASE_URL", "expected a postgres:// URL"));
        }
        sqlx::postgres::PgConnectOptions::from_str(url.expose_secret()).map_err(|e| {
            // sqlx's message can quote the URL; keep only its kind.
            let reason = match e {
                sqlx::Error::Configuration(_) => "not a valid postgres:// URL".to_owned(),
                other => other.to_string(),
            };
            invalid("DATABASE_URL", reason)
        })?;
        Ok(Self {
            url,
            max_connections: env.or("MIRAI_DB_MAX_CONNECTIONS", 10)?,
            connect_timeout: env
                .duration_or("MIRAI_DB_CONNECT_TIMEOUT", Duration::from_secs(30))?,
        })
    }

    /// A config for a given URL with default pool settings (tests, tools).
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            max_connections: 10,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What kind of deployment this is (`MIRAI_PROFILE`). Test-only machinery such as fault
/// injection is refused in production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Laptops, CI and test clusters (default).
    #[default]
    Development,
    /// Real traffic; the Helm chart sets it.
    Production,
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" => Ok(Self::Development),
            "production" => Ok(Self::Production),
            other => Err(format!(
                "expected `development` or `production`, got `{other}`"
            )),
        }
    }
}

/// An on/off switch (`on`/`off`, also `true`/`false`, `1`/`0`).
struct Switch(bool);

impl FromStr for Switch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Ok(Self(true)),
            "off" | "false" | "0" => Ok(Self(false)),
            other => Err(format!("expected `on` or `off`, got `{other}`")),
        }
    }
}

/// Where a service listens by default, and what it is called.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDefaults {
    /// Binary and telemetry name, e.g. `mirai-user`.
    pub name: &'static str,
    pub grpc_port: u16,
    pub admin_port: u16,
}

/// Configuration every gRPC service shares.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: &'static str,
    /// gRPC listener (`MIRAI_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listener (`MIRAI_ADMIN_ADDR`).
    pub admin_addr: SocketAddr,
    pub database: DatabaseConfig,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
    pub pubsub: PubSubConfig,
    /// `MIRAI_PROFILE`, default development.
    pub profile: Profile,
    /// Calls handled at once before new ones are refused with `RESOURCE_EXHAUSTED`
    /// (`MIRAI_MAX_IN_FLIGHT`, default 1024; 0: no limit). Refusing at once beats queueing: a
    /// queued call waits while its caller's deadline runs out, and the gateway retries or
    /// answers 503 sooner. Health checks and reflection are never refused.
    pub max_in_flight: usize,
    /// Fault injection: `None` is off (default); `Some` is on, starting with these rules
    /// (`MIRAI_FAULT_INJECTION=on` and/or `MIRAI_FAULTS`). Never in production.
    pub fault_injection: Option<FaultRules>,
    /// gRPC server reflection (`MIRAI_GRPC_REFLECTION`, `on`/`off`): on by default in
    /// development, off by default in production, where it would hand every caller the full
    /// API description, admin RPCs included.
    pub reflection: bool,
    /// This process's signing key and the callers it trusts (`MIRAI_INTERNAL_SIGNING_KEY`,
    /// `MIRAI_INTERNAL_TRUSTED_KEYS`; required to serve in production, checked by
    /// [`crate::grpc::GrpcServer::bind`]). See [`crate::grpc::identity`].
    pub identity: Identity,
}

impl ServiceConfig {
    pub fn from_env(env: &Env, defaults: ServiceDefaults) -> Result<Self, ConfigError> {
        let profile = env.or("MIRAI_PROFILE", Profile::Development)?;
        Ok(Self {
            name: defaults.name,
            grpc_addr: env.or("MIRAI_GRPC_ADDR", any_addr(defaults.grpc_port))?,
            admin_addr: env.or("MIRAI_ADMIN_ADDR", any_addr(defaults.admin_port))?,
            database: DatabaseConfig::from_env(env)?,
            shutdown: ShutdownConfig::from_env(env)?,
            telemetry: TelemetryConfig::from_env(env, defaults.name)?,
            pubsub: PubSubConfig::from_env(env)?,
            profile,
            max_in_flight: env.or("MIRAI_MAX_IN_FLIGHT", 1024)?,
            fault_injection: fault_injection_from_env(env, profile)?,
            reflection: env
                .or(
                    "MIRAI_GRPC_REFLECTION",
                    Switch(profile == Profile::Development),
                )?
                .0,
            identity: Identity::from_env(env, defaults.name)?,
        })
    }

    /// A config for tests: loopback port 0 for both listeners, the given database, short
    /// shutdown timings, and the test emulator with a fresh name prefix.
    pub fn for_tests(name: &'static str, database_url: impl Into<String>) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            name,
            grpc_addr: loopback,
            admin_addr: loopback,
            database: DatabaseConfig::with_url(database_url),
            shutdown: ShutdownConfig {
                drain_delay: Duration::ZERO,
                grace: Duration::from_secs(10),
            },
            telemetry: TelemetryConfig {
                service_name: name.to_owned(),
                log_filter: "info".to_owned(),
                log_format: LogFormat::Pretty,
                otlp_endpoint: None,
            },
            pubsub: PubSubConfig::for_tests(),
            profile: Profile::Development,
            max_in_flight: 1024,
            fault_injection: None,
            reflection: true,
            identity: Identity::for_tests(name),
        }
    }

    /// The consumer name in subscription names: the binary name without `mirai-`.
    pub fn consumer_name(&self) -> &'static str {
        self.name.strip_prefix("mirai-").unwrap_or(self.name)
    }
}

/// `MIRAI_FAULT_INJECTION` and `MIRAI_FAULTS`: rules imply `on`, contradict an explicit `off`,
/// and either switching injection on is refused in production.
fn fault_injection_from_env(
    env: &Env,
    profile: Profile,
) -> Result<Option<FaultRules>, ConfigError> {
    const SWITCH: &str = "MIRAI_FAULT_INJECTION";
    const RULES: &str = "MIRAI_FAULTS";
    let switch: Option<Switch> = env.optional(SWITCH)?;
    let in_production = |name: &str| {
        invalid(
            name,
            "fault injection is refused with MIRAI_PROFILE=production; unset it",
        )
    };
    if profile == Profile::Production {
        if env.get(RULES).is_some() {
            return Err(in_production(RULES));
        }
        if matches!(switch, Some(Switch(true))) {
            return Err(in_production(SWITCH));
        }
    }
    match (switch, env.get(RULES)) {
        (Some(Switch(false)), Some(_)) => Err(invalid(
            RULES,
            "rules are set but MIRAI_FAULT_INJECTION=off; unset one of them",
        )),
        (_, Some(rules)) => Ok(Some(
            FaultRules::parse(rules).map_err(|e| invalid(RULES, e))?,
        )),
        (Some(Switch(true)), None) => Ok(Some(FaultRules::default())),
        (Some(Switch(false)) | None, None) => Ok(None),
    }
}

fn any_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], port))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: ServiceDefaults = ServiceDefaults {
        name: "mirai-test",
        grpc_port: 50099,
        admin_port: 9099,
    };

    #[test]
    fn missing_database_url_is_named() {
        let err = ServiceConfig::from_env(&Env::default(), DEFAULTS).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Missing {
                name: "DATABASE_URL".into()
            }
        );
        assert_eq!(err.to_string(), "DATABASE_URL is required but not set");
    }

    #[test]
    fn malformed_values_name_the_variable_and_hide_secrets() {
        let env = Env::from_pairs([("DATABASE_URL", "mysql://u:hunter2@h/db")]);
        let err = ServiceConfig::from_env(&env, DEFAULTS).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is invalid"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://localhost/db"),
            ("MIRAI_GRPC_ADDR", "not-an-addr"),
        ]);
        let err = ServiceConfig::from_env(&env, DEFAULTS).unwrap_err();
        assert!(
            err.to_string().starts_with("MIRAI_GRPC_ADDR is invalid"),
            "{err}"
        );

        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://localhost/db"),
            ("MIRAI_SHUTDOWN_GRACE", "soon"),
        ]);
        let err = ServiceConfig::from_env(&env, DEFAULTS).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("MIRAI_SHUTDOWN_GRACE is invalid"),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply_and_empty_counts_as_unset() {
        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://localhost/db"),
            ("GOOGLE_CLOUD_PROJECT", "p"),
            ("MIRAI_ADMIN_ADDR", " "),
            ("MIRAI_LOG_FORMAT", "pretty"),
        ]);
        let cfg = ServiceConfig::from_env(&env, DEFAULTS).unwrap();
        assert_eq!(cfg.grpc_addr.port(), 50099);
        assert_eq!(cfg.admin_addr.port(), 9099);
        assert_eq!(cfg.telemetry.log_format, LogFormat::Pretty);
        assert_eq!(cfg.shutdown.grace, Duration::from_secs(20));
        assert_eq!(cfg.database.max_connections, 10);
        assert!(
            !cfg.pubsub.provision,
            "provisioning is off on Google Cloud by default"
        );
        assert_eq!(cfg.consumer_name(), "test");
        assert_eq!(cfg.profile, Profile::Development);
        assert_eq!(cfg.max_in_flight, 1024);
        assert_eq!(cfg.fault_injection, None);
        assert!(cfg.reflection, "reflection is on in development");
    }

    #[test]
    fn reflection_is_off_by_default_in_production() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::grpc::identity::test_signing_key();
        let (pem, trusted) = (dir.path().join("k.pem"), dir.path().join("t.json"));
        std::fs::write(
            &pem,
            ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, Default::default())
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        std::fs::write(
            &trusted,
            crate::grpc::identity::trusted_keys_json(&key, &["mirai-gateway"]),
        )
        .unwrap();
        let (pem, trusted) = (pem.to_str().unwrap(), trusted.to_str().unwrap());
        let production = |extra: &[(&str, &str)]| {
            let mut vars = vec![
                ("MIRAI_PROFILE", "production"),
                ("MIRAI_INTERNAL_SIGNING_KEY", pem),
                ("MIRAI_INTERNAL_TRUSTED_KEYS", trusted),
            ];
            vars.extend_from_slice(extra);
            ServiceConfig::from_env(&service_env(&vars), DEFAULTS)
        };
        assert!(!production(&[]).unwrap().reflection);
        assert!(
            production(&[("MIRAI_GRPC_REFLECTION", "on")])
                .unwrap()
                .reflection,
            "an operator may switch it on"
        );
        let cfg =
            ServiceConfig::from_env(&service_env(&[("MIRAI_GRPC_REFLECTION", "off")]), DEFAULTS)
                .unwrap();
        assert!(!cfg.reflection);
        let err = error_of(&[("MIRAI_GRPC_REFLECTION", "sometimes")]);
        assert!(err.starts_with("MIRAI_GRPC_REFLECTION is invalid"), "{err}");
        let keyless =
            ServiceConfig::from_env(&service_env(&[("MIRAI_PROFILE", "production")]), DEFAULTS)
                .expect("one-shot modes (--migrate-only) need no keys");
        assert_eq!(
            keyless.identity.require_keys().unwrap_err().to_string(),
            "MIRAI_INTERNAL_SIGNING_KEY is required but not set",
            "serving does"
        );
    }

    fn service_env(extra: &[(&str, &str)]) -> Env {
        Env::from_pairs(
            [
                ("DATABASE_URL", "postgres://localhost/db"),
                ("GOOGLE_CLOUD_PROJECT", "p"),
            ]
            .iter()
            .chain(extra)
            .copied(),
        )
    }

    fn error_of(extra: &[(&str, &str)]) -> String {
        ServiceConfig::from_env(&service_env(extra), DEFAULTS)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn profile_and_in_flight_limit_parse_and_name_the_variable() {
        let cfg = ServiceConfig::from_env(
            &service_env(&[
                ("MIRAI_PROFILE", "Development"),
                ("MIRAI_MAX_IN_FLIGHT", "0"),
            ]),
            DEFAULTS,
        )
        .unwrap();
        assert_eq!(cfg.profile, Profile::Development);
        assert_eq!(cfg.max_in_flight, 0);

        let err = error_of(&[("MIRAI_PROFILE", "staging")]);
        assert_eq!(
            err,
            "MIRAI_PROFILE is invalid: expected `development` or `production`, got `staging`"
        );
        let err = error_of(&[("MIRAI_MAX_IN_FLIGHT", "lots")]);
        assert!(err.starts_with("MIRAI_MAX_IN_FLIGHT is invalid"), "{err}");
    }

    #[test]
    fn fault_injection_is_off_unless_asked_and_rules_imply_it() {
        let faults = |extra: &[(&str, &str)]| {
            ServiceConfig::from_env(&service_env(extra), DEFAULTS)
                .unwrap()
                .fault_injection
        };
        assert_eq!(faults(&[]), None);
        assert_eq!(faults(&[("MIRAI_FAULT_INJECTION", "off")]), None);
        assert_eq!(
            faults(&[("MIRAI_FAULT_INJECTION", "on")]),
            Some(FaultRules::default())
        );
        let rules = faults(&[("MIRAI_FAULTS", "a.B/C=error(unavailable,0.5)")]).unwrap();
        assert_eq!(rules.to_string(), "a.B/C=error(unavailable,0.5)");
        assert!(
            faults(&[
                ("MIRAI_FAULT_INJECTION", "on"),
                ("MIRAI_FAULTS", "*=hang()")
            ])
            .is_some()
        );
        // Explicitly off in production is fine.
        assert_eq!(
            fault_injection_from_env(
                &service_env(&[("MIRAI_FAULT_INJECTION", "off")]),
                Profile::Production
            ),
            Ok(None)
        );
    }

    #[test]
    fn fault_injection_errors_name_the_variable() {
        let err = error_of(&[("MIRAI_FAULT_INJECTION", "maybe")]);
        assert!(err.starts_with("MIRAI_FAULT_INJECTION is invalid"), "{err}");
        let err = error_of(&[("MIRAI_FAULTS", "*=error(teapot)")]);
        assert!(
            err.starts_with("MIRAI_FAULTS is invalid: fault rule `*=error(teapot)`"),
            "{err}"
        );
        let err = error_of(&[
            ("MIRAI_FAULT_INJECTION", "off"),
            ("MIRAI_FAULTS", "*=hang()"),
        ]);
        assert!(err.starts_with("MIRAI_FAULTS is invalid"), "{err}");
    }

    #[test]
    fn fault_injection_is_refused_in_production() {
        let err = error_of(&[
            ("MIRAI_PROFILE", "production"),
            ("MIRAI_FAULTS", "*=hang()"),
        ]);
        assert_eq!(
            err,
            "MIRAI_FAULTS is invalid: fault injection is refused with MIRAI_PROFILE=production; unset it"
        );
        // Refused even when the rules would not parse: the profile is the first thing said.
        let err = error_of(&[("MIRAI_PROFILE", "production"), ("MIRAI_FAULTS", "junk")]);
        assert!(
            err.contains("refused with MIRAI_PROFILE=production"),
            "{err}"
        );
        let err = error_of(&[
            ("MIRAI_PROFILE", "production"),
            ("MIRAI_FAULT_INJECTION", "on"),
        ]);
        assert!(
            err.starts_with("MIRAI_FAULT_INJECTION is invalid: fault injection is refused"),
            "{err}"
        );
    }
}
