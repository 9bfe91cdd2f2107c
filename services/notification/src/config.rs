//! Configuration of `mirai-notification`.
//!
//! Read once from the environment by [`from_env`]; tests build [`Config`] directly
//! ([`Config::for_tests`]) and change the fields they care about. Every variable is listed in
//! the README.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults, TelemetryConfig};
use secrecy::SecretString;

/// Name and default ports (see ARCHITECTURE.md "Default ports").
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    name: "mirai-notification",
    grpc_port: 50055,
    admin_port: 9095,
};

/// Everything the service reads at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// Email over SMTP; `None` (no `MIRAI_SMTP_HOST`) records email deliveries as FAILED
    /// with "email is not configured", so they stay visible and can be re-sent later.
    pub smtp: Option<SmtpConfig>,
    /// FCM HTTP v1 push; `None` (no `MIRAI_FCM_CREDENTIALS_FILE`) fails push deliveries
    /// visibly, like email.
    pub fcm: Option<FcmConfig>,
    /// Verification links for email addresses (alert email goes to verified ones only).
    pub verification: VerificationConfig,
    pub webhooks: WebhookConfig,
    pub deliveries: DeliveryConfig,
    pub limits: AlertLimits,
    pub caps: UserCaps,
    pub saga: SagaConfig,
    /// `MIRAI_DIGEST_DEFAULT_DELIVER_AT` (default `08:00`): local time of daily digests when
    /// the user's preferences do not say.
    pub digest_default_deliver_at: chrono::NaiveTime,
    /// `MIRAI_PUBLIC_SCHEMA_URL`: the `dataschema` of the public price-alert events.
    pub public_schema_url: String,
}

impl Settings for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.service.telemetry
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain TCP (a local relay or a test server only).
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl FromStr for SmtpTls {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(Self::None),
            "starttls" => Ok(Self::StartTls),
            "tls" | "smtps" => Ok(Self::Tls),
            other => Err(format!("expected none, starttls or tls, got `{other}`")),
        }
    }
}

/// The SMTP relay.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `MIRAI_SMTP_HOST`.
    pub host: String,
    /// `MIRAI_SMTP_PORT` (default 587 with STARTTLS, 465 with TLS, 25 without).
    pub port: u16,
    /// `MIRAI_SMTP_TLS`: `starttls` (default), `tls` or `none`.
    pub tls: SmtpTls,
    /// `MIRAI_SMTP_USERNAME` and `MIRAI_SMTP_PASSWORD` (or `_FILE`): optional, both or neither.
    pub credentials: Option<(String, SecretString)>,
    /// `MIRAI_SMTP_FROM`, e.g. `MiraiKakaku <alerts@mirai.example>`.
    pub from: String,
    /// `MIRAI_SMTP_TIMEOUT` (default 10 s) per message.
    pub timeout: Duration,
}

/// Email address verification links.
#[derive(Debug, Clone)]
pub struct VerificationConfig {
    /// `MIRAI_EMAIL_VERIFICATION_KEY` (or `_FILE`): the HMAC-SHA256 key that signs links;
    /// required with SMTP (every replica must share it). Without SMTP no mail is sent and a
    /// random key is used.
    pub key: SecretString,
    /// `MIRAI_EMAIL_VERIFICATION_URL` (default
    /// `http://localhost:8080/v1/notification-email/confirm`): the gateway's confirmation
    /// route as users reach it; `token=…` is appended.
    pub link_base: String,
    /// `MIRAI_EMAIL_VERIFICATION_TTL` (default 24 h): how long a link works.
    pub ttl: Duration,
    /// `MIRAI_EMAIL_VERIFICATION_PER_ADDRESS` (default 3): links per address per hour.
    pub per_address: u32,
    /// `MIRAI_EMAIL_VERIFICATION_PER_USER` (default 5): links per user per hour.
    pub per_user: u32,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        use base64::Engine as _;
        use rand::RngCore as _;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            key: base64::engine::general_purpose::STANDARD.encode(key).into(),
            link_base: "http://localhost:8080/v1/notification-email/confirm".to_owned(),
            ttl: Duration::from_secs(24 * 3600),
            per_address: 3,
            per_user: 5,
        }
    }
}

/// Firebase Cloud Messaging, HTTP v1 API.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// `MIRAI_FCM_CREDENTIALS_FILE`: the service-account JSON key (a mounted secret); its
    /// `project_id`, `client_email`, `private_key` and `token_uri` are used.
    pub credentials_file: PathBuf,
    /// `MIRAI_FCM_ENDPOINT` (default `https://fcm.googleapis.com`): base of
    /// `/v1/projects/{project}/messages:send`.
    pub endpoint: String,
    /// `MIRAI_FCM_TOKEN_URI`: overrides the key's `token_uri` (tests).
    pub token_uri: Option<String>,
    /// `MIRAI_FCM_TIMEOUT` (default 10 s) per request.
    pub timeout: Duration,
}

/// Webhook delivery (Standard Webhooks).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `MIRAI_WEBHOOK_TIMEOUT` (default 10 s): one attempt's limit, connect to last byte.
    pub timeout: Duration,
    /// `MIRAI_WEBHOOK_DISABLE_AFTER` (default 5 days): an endpoint failing without a single
    /// success for this long is disabled (DISABLED_FAILING).
    pub disable_after: Duration,
    /// `MIRAI_WEBHOOK_ALLOW_PRIVATE_TARGETS` (default false): allow loopback, private and
    /// link-local targets and plain `http://`. Only for tests and local stacks.
    pub allow_private_targets: bool,
    /// `MIRAI_WEBHOOK_BLOCKED_CIDRS` (comma-separated, default none): ranges refused besides
    /// the built-in private, loopback, link-local and tunnelling ones — the cluster's pod and
    /// service ranges, the VPC's, anything else only the cluster can reach.
    pub blocked_cidrs: Vec<ipnet::IpNet>,
    /// `MIRAI_WEBHOOK_SECRET_KEYS` (or `_FILE`): the key-encryption keys that wrap the data
    /// keys of the signing secrets at rest, `id:base64(32 bytes)` comma-separated, current
    /// first (see [`crate::secrets`]). Unset: secrets are stored in the clear (a warning at
    /// start); production sets it from the secret store.
    pub secret_keys: Option<crate::secrets::Keyring>,
    /// `MIRAI_WEBHOOK_MAX_ENDPOINTS` (default 20) per user.
    pub max_endpoints: u32,
}

/// The delivery worker.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `MIRAI_DELIVERY_RETRY_SCHEDULE` (default `0s,5s,5m,30m,2h,5h,10h,10h`): the delay
    /// before each attempt; the first is the initial attempt, so its length is the number of
    /// attempts. After the last failure the delivery is FAILED.
    pub retry_schedule: Vec<Duration>,
    /// `MIRAI_DELIVERY_CONCURRENCY` (default 32): attempts in flight per replica.
    pub concurrency: usize,
    /// `MIRAI_DELIVERY_POLL_INTERVAL` (default 1 s): fallback when no wake-up arrives.
    pub poll_interval: Duration,
}

/// Per-role limits on live (PENDING or ACTIVE) alerts; a user gets the highest limit of
/// their roles.
#[derive(Debug, Clone, Copy)]
pub struct AlertLimits {
    /// `MIRAI_ALERT_LIMIT_USER` (default 20).
    pub user: u32,
    /// `MIRAI_ALERT_LIMIT_PREMIUM` (default 200).
    pub premium: u32,
    /// `MIRAI_ALERT_LIMIT_ADMIN` (default 1,000).
    pub admin: u32,
}

/// Per-user caps besides alerts and webhook endpoints (issue 17, finding 9).
#[derive(Debug, Clone, Copy)]
pub struct UserCaps {
    /// `MIRAI_PUSH_MAX_DEVICES` (default 10): push devices per user.
    pub push_devices: u32,
    /// `MIRAI_NOTIFICATION_STREAMS_PER_USER` (default 5): open live notification streams per
    /// user on each replica.
    pub streams: u32,
}

/// The alert-activation saga and the sweeps.
#[derive(Debug, Clone, Copy)]
pub struct SagaConfig {
    /// `MIRAI_ALERT_ACTIVATION_TIMEOUT` (default 30 s): wait for stock-data's answer before
    /// asking again; doubles per attempt.
    pub activation_timeout: Duration,
    /// `MIRAI_ALERT_ACTIVATION_ATTEMPTS` (default 5): requests before the alert is EXPIRED.
    pub activation_attempts: u32,
    /// `MIRAI_SWEEP_INTERVAL` (default 5 s): how often stuck sagas and expiries are looked for.
    pub sweep_interval: Duration,
}

impl WebhookConfig {
    /// What webhook targets are refused.
    pub fn target_policy(&self) -> crate::domain::target::Policy {
        crate::domain::target::Policy {
            allow_private: self.allow_private_targets,
            blocked: self.blocked_cidrs.clone().into(),
        }
    }
}

impl Config {
    /// Defaults around a given service configuration (tests, and `startup::build`).
    pub fn with_service(service: ServiceConfig) -> Self {
        Self {
            service,
            smtp: None,
            fcm: None,
            verification: VerificationConfig::default(),
            webhooks: WebhookConfig {
                timeout: Duration::from_secs(10),
                disable_after: Duration::from_secs(5 * 24 * 3600),
                allow_private_targets: false,
                blocked_cidrs: Vec::new(),
                secret_keys: None,
                max_endpoints: 20,
            },
            deliveries: DeliveryConfig {
                retry_schedule: default_schedule(),
                concurrency: 32,
                poll_interval: Duration::from_secs(1),
            },
            limits: AlertLimits {
                user: 20,
                premium: 200,
                admin: 1000,
            },
            caps: UserCaps {
                push_devices: 10,
                streams: 5,
            },
            saga: SagaConfig {
                activation_timeout: Duration::from_secs(30),
                activation_attempts: 5,
                sweep_interval: Duration::from_secs(5),
            },
            digest_default_deliver_at: chrono::NaiveTime::from_hms_opt(8, 0, 0)
                .expect("valid time"),
            public_schema_url: DEFAULT_SCHEMA_URL.to_owned(),
        }
    }

    /// Test configuration: loopback listeners on port 0, the given database, the test emulator,
    /// a random KEK for webhook secrets.
    pub fn for_tests(database_url: &str) -> Self {
        let mut config = Self::with_service(ServiceConfig::for_tests(DEFAULTS.name, database_url));
        config.webhooks.secret_keys = Some(crate::secrets::Keyring::random("test"));
        config
    }
}

/// Where the committed schema is published (`schemas/price-alert.v2.json`).
pub const DEFAULT_SCHEMA_URL: &str = "https://mirai.dev/schemas/price-alert.v2.json";

fn default_schedule() -> Vec<Duration> {
    ["0s", "5s", "5m", "30m", "2h", "5h", "10h", "10h"]
        .iter()
        .map(|s| humantime::parse_duration(s).expect("valid default"))
        .collect()
}

fn invalid(name: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.to_string(),
    }
}

/// A secret from `NAME` or from the file named by `NAME_FILE` (Kubernetes secret mounts).
fn secret_or_file(env: &Env, name: &str) -> Result<Option<SecretString>, ConfigError> {
    if let Some(value) = env.get(name) {
        return Ok(Some(SecretString::from(value.to_owned())));
    }
    let file_var = format!("{name}_FILE");
    match env.get(&file_var) {
        None => Ok(None),
        Some(path) => std::fs::read_to_string(path)
            .map(|s| Some(SecretString::from(s.trim_end().to_owned())))
            .map_err(|e| invalid(&file_var, format!("cannot read {path}: {e}"))),
    }
}

fn schedule_from(env: &Env, name: &str) -> Result<Option<Vec<Duration>>, ConfigError> {
    let Some(raw) = env.get(name) else {
        return Ok(None);
    };
    let schedule = raw
        .split(',')
        .map(|part| humantime::parse_duration(part.trim()).map_err(|e| invalid(name, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if schedule.is_empty() || schedule.len() > 20 {
        return Err(invalid(name, "expected 1 to 20 comma-separated durations"));
    }
    Ok(Some(schedule))
}

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    let mut config = Config::with_service(ServiceConfig::from_env(env, DEFAULTS)?);
    if let Some(host) = env.optional::<String>("MIRAI_SMTP_HOST")? {
        let tls: SmtpTls = env.or("MIRAI_SMTP_TLS", SmtpTls::StartTls)?;
        let default_port = match tls {
            SmtpTls::None => 25,
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
        };
        let username: Option<String> = env.optional("MIRAI_SMTP_USERNAME")?;
        let password = secret_or_file(env, "MIRAI_SMTP_PASSWORD")?;
        let credentials = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    name: "MIRAI_SMTP_PASSWORD".to_owned(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    name: "MIRAI_SMTP_USERNAME".to_owned(),
                });
            }
        };
        let from: String = env.required("MIRAI_SMTP_FROM")?;
        from.parse::<lettre::message::Mailbox>()
            .map_err(|e| invalid("MIRAI_SMTP_FROM", e))?;
        config.smtp = Some(SmtpConfig {
            host,
            port: env.or("MIRAI_SMTP_PORT", default_port)?,
            tls,
            credentials,
            from,
            timeout: env.duration_or("MIRAI_SMTP_TIMEOUT", Duration::from_secs(10))?,
        });
    }
    let v = &mut config.verification;
    match secret_or_file(env, "MIRAI_EMAIL_VERIFICATION_KEY")? {
        Some(key) => {
            if secrecy::ExposeSecret::expose_secret(&key).len() < 32 {
                return Err(invalid(
                    "MIRAI_EMAIL_VERIFICATION_KEY",
                    "at least 32 characters",
                ));
            }
            v.key = key;
        }
        None if config.smtp.is_some() => {
            return Err(ConfigError::Missing {
                name: "MIRAI_EMAIL_VERIFICATION_KEY".to_owned(),
            });
        }
        None => {}
    }
    v.link_base = env.or("MIRAI_EMAIL_VERIFICATION_URL", v.link_base.clone())?;
    v.ttl = env.duration_or("MIRAI_EMAIL_VERIFICATION_TTL", v.ttl)?;
    v.per_address = env.or("MIRAI_EMAIL_VERIFICATION_PER_ADDRESS", v.per_address)?;
    v.per_user = env.or("MIRAI_EMAIL_VERIFICATION_PER_USER", v.per_user)?;
    if let Some(file) = env.optional::<PathBuf>("MIRAI_FCM_CREDENTIALS_FILE")? {
        if !file.is_file() {
            return Err(invalid(
                "MIRAI_FCM_CREDENTIALS_FILE",
                format!("{} is not a readable file", file.display()),
            ));
        }
        config.fcm = Some(FcmConfig {
            credentials_file: file,
            endpoint: env.or(
                "MIRAI_FCM_ENDPOINT",
                "https://fcm.googleapis.com".to_owned(),
            )?,
            token_uri: env.optional("MIRAI_FCM_TOKEN_URI")?,
            timeout: env.duration_or("MIRAI_FCM_TIMEOUT", Duration::from_secs(10))?,
        });
    }
    let w = &mut config.webhooks;
    w.timeout = env.duration_or("MIRAI_WEBHOOK_TIMEOUT", w.timeout)?;
    w.disable_after = env.duration_or("MIRAI_WEBHOOK_DISABLE_AFTER", w.disable_after)?;
    w.allow_private_targets = env.or("MIRAI_WEBHOOK_ALLOW_PRIVATE_TARGETS", false)?;
    if let Some(raw) = env.get("MIRAI_WEBHOOK_BLOCKED_CIDRS") {
        w.blocked_cidrs = raw
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                part.parse::<ipnet::IpNet>()
                    .map_err(|e| invalid("MIRAI_WEBHOOK_BLOCKED_CIDRS", format!("{part:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(keys) = secret_or_file(env, "MIRAI_WEBHOOK_SECRET_KEYS")? {
        w.secret_keys = Some(
            crate::secrets::Keyring::parse(secrecy::ExposeSecret::expose_secret(&keys))
                .map_err(|e| invalid("MIRAI_WEBHOOK_SECRET_KEYS", e))?,
        );
    }
    w.max_endpoints = env.or("MIRAI_WEBHOOK_MAX_ENDPOINTS", w.max_endpoints)?;
    let d = &mut config.deliveries;
    if let Some(schedule) = schedule_from(env, "MIRAI_DELIVERY_RETRY_SCHEDULE")? {
        d.retry_schedule = schedule;
    }
    d.concurrency = env.or("MIRAI_DELIVERY_CONCURRENCY", d.concurrency)?;
    if d.concurrency == 0 {
        return Err(invalid("MIRAI_DELIVERY_CONCURRENCY", "must be at least 1"));
    }
    d.poll_interval = env.duration_or("MIRAI_DELIVERY_POLL_INTERVAL", d.poll_interval)?;
    let l = &mut config.limits;
    l.user = env.or("MIRAI_ALERT_LIMIT_USER", l.user)?;
    l.premium = env.or("MIRAI_ALERT_LIMIT_PREMIUM", l.premium)?;
    l.admin = env.or("MIRAI_ALERT_LIMIT_ADMIN", l.admin)?;
    let c = &mut config.caps;
    c.push_devices = env.or("MIRAI_PUSH_MAX_DEVICES", c.push_devices)?;
    c.streams = env.or("MIRAI_NOTIFICATION_STREAMS_PER_USER", c.streams)?;
    let s = &mut config.saga;
    s.activation_timeout =
        env.duration_or("MIRAI_ALERT_ACTIVATION_TIMEOUT", s.activation_timeout)?;
    s.activation_attempts = env.or("MIRAI_ALERT_ACTIVATION_ATTEMPTS", s.activation_attempts)?;
    if s.activation_attempts == 0 {
        return Err(invalid(
            "MIRAI_ALERT_ACTIVATION_ATTEMPTS",
            "must be at least 1",
        ));
    }
    s.sweep_interval = env.duration_or("MIRAI_SWEEP_INTERVAL", s.sweep_interval)?;
    if let Some(raw) = env.get("MIRAI_DIGEST_DEFAULT_DELIVER_AT") {
        config.digest_default_deliver_at =
            chrono::NaiveTime::parse_from_str(raw.trim(), "%H:%M")
                .map_err(|_| invalid("MIRAI_DIGEST_DEFAULT_DELIVER_AT", "expected HH:MM"))?;
    }
    config.public_schema_url = env.or("MIRAI_PUBLIC_SCHEMA_URL", config.public_schema_url)?;
    Ok(config)
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

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Config, ConfigError> {
        let mut pairs = base();
        pairs.extend_from_slice(extra);
        from_env(&Env::from_pairs(pairs))
    }

    #[test]
    fn defaults_follow_the_standard_webhooks_schedule() {
        let config = with(&[]).unwrap();
        assert!(config.smtp.is_none() && config.fcm.is_none());
        assert_eq!(config.deliveries.retry_schedule.len(), 8);
        assert_eq!(
            config.deliveries.retry_schedule[3],
            Duration::from_secs(30 * 60)
        );
        assert!(!config.webhooks.allow_private_targets);
        assert_eq!(config.limits.user, 20);
        assert!(config.webhooks.blocked_cidrs.is_empty());
        assert!(config.webhooks.secret_keys.is_none());
        let config = with(&[(
            "MIRAI_WEBHOOK_SECRET_KEYS",
            "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,k1:AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )])
        .unwrap();
        assert!(format!("{:?}", config.webhooks.secret_keys).contains("[\"k2\", \"k1\"]"));
        let config = with(&[(
            "MIRAI_WEBHOOK_BLOCKED_CIDRS",
            "10.4.0.0/14, 34.118.224.0/20,2600:1900::/44",
        )])
        .unwrap();
        assert_eq!(config.webhooks.blocked_cidrs.len(), 3);
    }

    #[test]
    fn smtp_settings_are_read_and_checked() {
        let config = with(&[
            ("MIRAI_SMTP_HOST", "smtp.example.com"),
            ("MIRAI_SMTP_TLS", "tls"),
            ("MIRAI_SMTP_FROM", "Mirai <alerts@example.com>"),
            ("MIRAI_SMTP_USERNAME", "u"),
            ("MIRAI_SMTP_PASSWORD", "p"),
            (
                "MIRAI_EMAIL_VERIFICATION_KEY",
                "0123456789abcdef0123456789abcdef",
            ),
        ])
        .unwrap();
        let smtp = config.smtp.unwrap();
        assert_eq!((smtp.port, smtp.tls), (465, SmtpTls::Tls));
        assert!(smtp.credentials.is_some());
        // Links must be verifiable by every replica: SMTP needs the shared key.
        let err = with(&[("MIRAI_SMTP_HOST", "h"), ("MIRAI_SMTP_FROM", "a@b.c")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MIRAI_EMAIL_VERIFICATION_KEY is required but not set"
        );

        let err = with(&[
            ("MIRAI_SMTP_HOST", "h"),
            (
                "MIRAI_EMAIL_VERIFICATION_KEY",
                "0123456789abcdef0123456789abcdef",
            ),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "MIRAI_SMTP_FROM is required but not set");
        let err = with(&[
            ("MIRAI_SMTP_HOST", "h"),
            ("MIRAI_SMTP_FROM", "a@b.c"),
            ("MIRAI_SMTP_TLS", "maybe"),
        ])
        .unwrap_err();
        assert!(
            err.to_string().starts_with("MIRAI_SMTP_TLS is invalid"),
            "{err}"
        );
        let err = with(&[
            ("MIRAI_SMTP_HOST", "h"),
            ("MIRAI_SMTP_FROM", "a@b.c"),
            ("MIRAI_SMTP_USERNAME", "u"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "MIRAI_SMTP_PASSWORD is required but not set"
        );
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (name, value) in [
            ("MIRAI_DELIVERY_RETRY_SCHEDULE", "0s,soon"),
            ("MIRAI_WEBHOOK_ALLOW_PRIVATE_TARGETS", "perhaps"),
            ("MIRAI_ALERT_LIMIT_USER", "-1"),
            ("MIRAI_FCM_CREDENTIALS_FILE", "/nonexistent/key.json"),
            ("MIRAI_DIGEST_DEFAULT_DELIVER_AT", "8am"),
            ("MIRAI_ALERT_ACTIVATION_ATTEMPTS", "0"),
            ("MIRAI_WEBHOOK_BLOCKED_CIDRS", "10.4.0.0/14,pods"),
            ("MIRAI_WEBHOOK_SECRET_KEYS", "k1:c2hvcnQ="),
        ] {
            let err = with(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{name}: {err}");
        }
    }
}
