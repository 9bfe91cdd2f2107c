//! Configuration of `mirai-user`.

use std::path::PathBuf;
use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ServiceConfig, ServiceDefaults, TelemetryConfig};

/// Name and default ports (see ARCHITECTURE.md "Default ports").
pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    name: "mirai-user",
    grpc_port: 50051,
    admin_port: 9091,
};

/// The whole configuration: the shared service block plus the user service's own settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub auth: AuthConfig,
}

impl Settings for Config {
    fn telemetry(&self) -> &TelemetryConfig {
        &self.service.telemetry
    }
}

pub fn from_env(env: &Env) -> Result<Config, ConfigError> {
    Ok(Config {
        service: ServiceConfig::from_env(env, DEFAULTS)?,
        auth: AuthConfig::from_env(env)?,
    })
}

/// Argon2id cost parameters. New hashes use them; a stored hash with lower ones is replaced at
/// the next successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Config {
    /// `MIRAI_ARGON2_MEMORY_KIB` (default 19456 = 19 MiB, the OWASP minimum).
    pub memory_kib: u32,
    /// `MIRAI_ARGON2_ITERATIONS` (default 2, the OWASP minimum at 19 MiB).
    pub iterations: u32,
    /// `MIRAI_ARGON2_PARALLELISM` (default 1: one lane; concurrency comes from requests).
    pub parallelism: u32,
}

impl Argon2Config {
    /// OWASP Password Storage Cheat Sheet: Argon2id with m=19 MiB, t=2, p=1 at least.
    pub const MINIMUM: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
}

/// Brute-force protection: failure counters per (account, client IP) pair, per IP and per
/// account, each attempt counted before its password is hashed, with growing lockouts.
#[derive(Debug, Clone)]
pub struct LockoutConfig {
    /// `MIRAI_LOCKOUT_PAIR_FAILURES` (default 5): failures of one email from one client IP
    /// within the window that lock that pair (only that IP is refused for that email).
    pub pair_failures: u32,
    /// `MIRAI_LOCKOUT_ACCOUNT_FAILURES` (default 20): failures of one email from any IPs within
    /// the window that lock the whole account — only when they also came from at least
    /// `account_ips` distinct IPs (distributed guessing). The owner is emailed an unlock link.
    pub account_failures: u32,
    /// `MIRAI_LOCKOUT_ACCOUNT_IPS` (default 3, at most 64): distinct client IPs the account's
    /// failures must come from before the whole account locks.
    pub account_ips: u32,
    /// `MIRAI_LOCKOUT_IP_FAILURES` (default 20): failures from one IP within the window that
    /// lock it (higher: offices and carrier NAT share addresses).
    pub ip_failures: u32,
    /// `MIRAI_LOCKOUT_WINDOW` (default 15m): failures older than this are forgotten.
    pub window: Duration,
    /// `MIRAI_LOCKOUT_BASE` (default 1m): the first lockout; each further one doubles.
    pub base: Duration,
    /// `MIRAI_LOCKOUT_MAX` (default 1h): the longest lockout.
    pub max: Duration,
    /// `MIRAI_UNLOCK_URL` (default `https://mirai.local/account/unlock`): the web page of the
    /// emailed unlock link; the secret is appended as `?token=` and the page posts it to
    /// `POST /v1/auth/unlock` (a link that unlocked on GET would be spent by mail scanners).
    pub unlock_url: String,
    /// `MIRAI_UNLOCK_LINK_TTL` (default 1h, 1m–24h): how long an unlock link works (once).
    pub unlock_link_ttl: Duration,
}

/// Where the JWT signing keys come from.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// `MIRAI_JWT_KEYS_DIR`: folder with `current.pem`, `next.pem` and `retired-<unix>.pem`
    /// (PKCS#8 Ed25519). Unset: an ephemeral key pair is made at start (a warning is logged;
    /// tokens then die with the process and replicas do not share keys).
    pub dir: Option<PathBuf>,
    /// `MIRAI_JWT_GENERATE_KEYS` (default false): write missing `current.pem` / `next.pem`
    /// into the folder at start. For the local stack and tests only.
    pub generate: bool,
    /// `MIRAI_JWT_RETIRED_KEY_GRACE` (default 1h): how long a retired key stays in the JWKS
    /// (and verifies tokens). Must exceed the access-token lifetime plus the JWKS max-age.
    pub retired_grace: Duration,
    /// `MIRAI_JWKS_MAX_AGE` (default 5m): how long caches may keep the JWKS.
    pub jwks_max_age: Duration,
}

/// The user side of the account-deletion saga.
#[derive(Debug, Clone)]
pub struct DeletionConfig {
    /// `MIRAI_DELETION_PARTICIPANTS` (comma-separated service names; default
    /// [`DEFAULT_PARTICIPANTS`]): the services that must confirm `user.data.purged` before an
    /// account is erased. Each must consume `user.deletion.requested`
    /// (`mirai_platform::events::deletion::participate`). `none`: deletion completes at once.
    pub participants: Vec<String>,
    /// `MIRAI_DELETION_REMIND_AFTER` (default 5m): a participant that has not confirmed this
    /// long after the last request gets the request again.
    pub remind_after: Duration,
    /// `MIRAI_DELETION_SWEEP_INTERVAL` (default 30s): how often stalled participants are looked for.
    pub sweep_interval: Duration,
}

/// Every service that holds user data and takes part in the deletion saga.
pub const DEFAULT_PARTICIPANTS: &[&str] =
    &["stock-data", "notification", "prediction", "analytics"];

/// Services that can be participants: those with a subscription to user-events whose
/// confirmations the user service reads.
pub const KNOWN_PARTICIPANTS: &[&str] = &["stock-data", "prediction", "analytics", "notification"];

impl DeletionConfig {
    pub fn defaults() -> Self {
        Self {
            participants: DEFAULT_PARTICIPANTS.iter().map(|p| p.to_string()).collect(),
            remind_after: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(30),
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::defaults();
        let participants = match env.optional::<String>("MIRAI_DELETION_PARTICIPANTS")? {
            None => d.participants,
            Some(list) if list.trim() == "none" => Vec::new(),
            Some(list) => {
                let mut names: Vec<String> = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if !KNOWN_PARTICIPANTS.contains(&name) {
                        return Err(ConfigError::Invalid {
                            name: "MIRAI_DELETION_PARTICIPANTS".to_owned(),
                            reason: format!(
                                "unknown participant `{name}` (known: {})",
                                KNOWN_PARTICIPANTS.join(", ")
                            ),
                        });
                    }
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_owned());
                    }
                }
                names
            }
        };
        Ok(Self {
            participants,
            remind_after: env.duration_or("MIRAI_DELETION_REMIND_AFTER", d.remind_after)?,
            sweep_interval: env.duration_or("MIRAI_DELETION_SWEEP_INTERVAL", d.sweep_interval)?,
        })
    }
}

/// The user service's own settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub argon2: Argon2Config,
    /// `MIRAI_ARGON2_MAX_CONCURRENT` (default 2): hashes computed at once. Each holds
    /// `memory_kib` of RAM and a blocking thread; more requests wait their turn.
    pub max_concurrent_hashes: usize,
    /// `MIRAI_JWT_ISSUER` (default `https://mirai.local`): `iss` of access tokens.
    pub issuer: String,
    /// `MIRAI_JWT_AUDIENCE` (default `mirai-api`): `aud` of access tokens.
    pub audience: String,
    /// `MIRAI_ACCESS_TOKEN_TTL` (default 15m, at most 15m).
    pub access_token_ttl: Duration,
    /// `MIRAI_REFRESH_IDLE_TTL` (default 14d): an unused refresh token expires after this.
    pub refresh_idle_ttl: Duration,
    /// `MIRAI_REFRESH_ABSOLUTE_TTL` (default 30d): a session (family) ends after this,
    /// however often it is refreshed.
    pub refresh_absolute_ttl: Duration,
    pub keys: KeysConfig,
    pub lockout: LockoutConfig,
    pub deletion: DeletionConfig,
}

const MAX_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

impl AuthConfig {
    /// Production defaults: everything at the values documented on the fields.
    pub fn defaults() -> Self {
        Self {
            argon2: Argon2Config::MINIMUM,
            max_concurrent_hashes: 2,
            issuer: "https://mirai.local".to_owned(),
            audience: "mirai-api".to_owned(),
            access_token_ttl: MAX_ACCESS_TOKEN_TTL,
            refresh_idle_ttl: Duration::from_secs(14 * 24 * 3600),
            refresh_absolute_ttl: Duration::from_secs(30 * 24 * 3600),
            keys: KeysConfig {
                dir: None,
                generate: false,
                retired_grace: Duration::from_secs(3600),
                jwks_max_age: Duration::from_secs(300),
            },
            lockout: LockoutConfig {
                pair_failures: 5,
                account_failures: 20,
                account_ips: 3,
                ip_failures: 20,
                window: Duration::from_secs(15 * 60),
                base: Duration::from_secs(60),
                max: Duration::from_secs(3600),
                unlock_url: "https://mirai.local/account/unlock".to_owned(),
                unlock_link_ttl: Duration::from_secs(3600),
            },
            deletion: DeletionConfig::defaults(),
        }
    }

    /// Test settings: cheap Argon2 parameters (below the production minimum, which only
    /// [`AuthConfig::from_env`] enforces) and ephemeral keys.
    pub fn for_tests() -> Self {
        Self {
            argon2: Argon2Config {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            ..Self::defaults()
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::defaults();
        let invalid = |name: &str, reason: String| ConfigError::Invalid {
            name: name.to_owned(),
            reason,
        };
        let argon2 = Argon2Config {
            memory_kib: env.or("MIRAI_ARGON2_MEMORY_KIB", d.argon2.memory_kib)?,
            iterations: env.or("MIRAI_ARGON2_ITERATIONS", d.argon2.iterations)?,
            parallelism: env.or("MIRAI_ARGON2_PARALLELISM", d.argon2.parallelism)?,
        };
        let min = Argon2Config::MINIMUM;
        if argon2.memory_kib < min.memory_kib {
            return Err(invalid(
                "MIRAI_ARGON2_MEMORY_KIB",
                format!("must be at least {} (OWASP minimum)", min.memory_kib),
            ));
        }
        if argon2.iterations < min.iterations {
            return Err(invalid(
                "MIRAI_ARGON2_ITERATIONS",
                format!("must be at least {} (OWASP minimum)", min.iterations),
            ));
        }
        if !(1..=16).contains(&argon2.parallelism) {
            return Err(invalid(
                "MIRAI_ARGON2_PARALLELISM",
                "must be between 1 and 16".to_owned(),
            ));
        }
        let max_concurrent_hashes: usize =
            env.or("MIRAI_ARGON2_MAX_CONCURRENT", d.max_concurrent_hashes)?;
        if max_concurrent_hashes == 0 {
            return Err(invalid(
                "MIRAI_ARGON2_MAX_CONCURRENT",
                "must be at least 1".to_owned(),
            ));
        }
        let access_token_ttl = env.duration_or("MIRAI_ACCESS_TOKEN_TTL", d.access_token_ttl)?;
        if access_token_ttl.is_zero() || access_token_ttl > MAX_ACCESS_TOKEN_TTL {
            return Err(invalid(
                "MIRAI_ACCESS_TOKEN_TTL",
                "must be between 1s and 15m".to_owned(),
            ));
        }
        let refresh_idle_ttl = env.duration_or("MIRAI_REFRESH_IDLE_TTL", d.refresh_idle_ttl)?;
        let refresh_absolute_ttl =
            env.duration_or("MIRAI_REFRESH_ABSOLUTE_TTL", d.refresh_absolute_ttl)?;
        if refresh_idle_ttl.is_zero() || refresh_idle_ttl > refresh_absolute_ttl {
            return Err(invalid(
                "MIRAI_REFRESH_IDLE_TTL",
                "must be positive and at most MIRAI_REFRESH_ABSOLUTE_TTL".to_owned(),
            ));
        }
        let keys = KeysConfig {
            dir: env.optional("MIRAI_JWT_KEYS_DIR")?,
            generate: env.or("MIRAI_JWT_GENERATE_KEYS", false)?,
            retired_grace: env.duration_or("MIRAI_JWT_RETIRED_KEY_GRACE", d.keys.retired_grace)?,
            jwks_max_age: env.duration_or("MIRAI_JWKS_MAX_AGE", d.keys.jwks_max_age)?,
        };
        if keys.generate && keys.dir.is_none() {
            return Err(ConfigError::Missing {
                name: "MIRAI_JWT_KEYS_DIR".to_owned(),
            });
        }
        if keys.retired_grace < access_token_ttl + keys.jwks_max_age {
            return Err(invalid(
                "MIRAI_JWT_RETIRED_KEY_GRACE",
                "must be at least MIRAI_ACCESS_TOKEN_TTL + MIRAI_JWKS_MAX_AGE".to_owned(),
            ));
        }
        let account_ips: u32 = env.or("MIRAI_LOCKOUT_ACCOUNT_IPS", d.lockout.account_ips)?;
        if !(1..=64).contains(&account_ips) {
            return Err(invalid(
                "MIRAI_LOCKOUT_ACCOUNT_IPS",
                "must be between 1 and 64".to_owned(),
            ));
        }
        let unlock_url: String = env.or("MIRAI_UNLOCK_URL", d.lockout.unlock_url.clone())?;
        if !unlock_url.starts_with("https://") && !unlock_url.starts_with("http://") {
            return Err(invalid(
                "MIRAI_UNLOCK_URL",
                "must be an http(s) URL".to_owned(),
            ));
        }
        let unlock_link_ttl =
            env.duration_or("MIRAI_UNLOCK_LINK_TTL", d.lockout.unlock_link_ttl)?;
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600)).contains(&unlock_link_ttl) {
            return Err(invalid(
                "MIRAI_UNLOCK_LINK_TTL",
                "must be between 1m and 24h".to_owned(),
            ));
        }
        let lockout = LockoutConfig {
            pair_failures: env
                .or("MIRAI_LOCKOUT_PAIR_FAILURES", d.lockout.pair_failures)?
                .max(1),
            account_failures: env
                .or("MIRAI_LOCKOUT_ACCOUNT_FAILURES", d.lockout.account_failures)?
                .max(1),
            account_ips,
            ip_failures: env
                .or("MIRAI_LOCKOUT_IP_FAILURES", d.lockout.ip_failures)?
                .max(1),
            window: env.duration_or("MIRAI_LOCKOUT_WINDOW", d.lockout.window)?,
            base: env.duration_or("MIRAI_LOCKOUT_BASE", d.lockout.base)?,
            max: env.duration_or("MIRAI_LOCKOUT_MAX", d.lockout.max)?,
            unlock_url,
            unlock_link_ttl,
        };
        Ok(Self {
            argon2,
            max_concurrent_hashes,
            issuer: env.or("MIRAI_JWT_ISSUER", d.issuer)?,
            audience: env.or("MIRAI_JWT_AUDIENCE", d.audience)?,
            access_token_ttl,
            refresh_idle_ttl,
            refresh_absolute_ttl,
            keys,
            lockout,
            deletion: DeletionConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_meet_the_owasp_minimum() {
        let config = AuthConfig::from_env(&Env::default()).unwrap();
        assert_eq!(config.argon2, Argon2Config::MINIMUM);
        assert!(config.access_token_ttl <= Duration::from_secs(900));
    }

    #[test]
    fn deletion_participants_are_known_services() {
        let env = Env::from_pairs([(
            "MIRAI_DELETION_PARTICIPANTS",
            "analytics, stock-data,analytics",
        )]);
        let config = DeletionConfig::from_env(&env).unwrap();
        assert_eq!(config.participants, ["analytics", "stock-data"]);
        let env = Env::from_pairs([("MIRAI_DELETION_PARTICIPANTS", "none")]);
        assert!(
            DeletionConfig::from_env(&env)
                .unwrap()
                .participants
                .is_empty()
        );
        let env = Env::from_pairs([("MIRAI_DELETION_PARTICIPANTS", "stock-data,billing")]);
        let error = DeletionConfig::from_env(&env).unwrap_err().to_string();
        assert!(
            error.contains("MIRAI_DELETION_PARTICIPANTS") && error.contains("billing"),
            "{error}"
        );
        // The default list passes the same check: every entry is a known participant.
        let env = Env::from_pairs([(
            "MIRAI_DELETION_PARTICIPANTS",
            DEFAULT_PARTICIPANTS.join(","),
        )]);
        assert_eq!(
            DeletionConfig::from_env(&env).unwrap().participants,
            DEFAULT_PARTICIPANTS
        );
    }

    #[test]
    fn lockout_settings_are_read_and_checked() {
        let env = Env::from_pairs([
            ("MIRAI_LOCKOUT_PAIR_FAILURES", "7"),
            ("MIRAI_LOCKOUT_ACCOUNT_IPS", "4"),
            ("MIRAI_UNLOCK_URL", "https://app.example/unlock"),
        ]);
        let lockout = AuthConfig::from_env(&env).unwrap().lockout;
        assert_eq!((lockout.pair_failures, lockout.account_ips), (7, 4));
        assert_eq!(lockout.unlock_url, "https://app.example/unlock");
        for (name, value) in [
            ("MIRAI_LOCKOUT_ACCOUNT_IPS", "0"),
            ("MIRAI_LOCKOUT_ACCOUNT_IPS", "65"),
            ("MIRAI_UNLOCK_URL", "app.example/unlock"),
            ("MIRAI_UNLOCK_LINK_TTL", "30d"),
        ] {
            let error = AuthConfig::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn weak_argon2_parameters_are_refused() {
        let env = Env::from_pairs([("MIRAI_ARGON2_MEMORY_KIB", "4096")]);
        let error = AuthConfig::from_env(&env).unwrap_err();
        assert!(
            error.to_string().contains("MIRAI_ARGON2_MEMORY_KIB"),
            "{error}"
        );
        let env = Env::from_pairs([("MIRAI_ACCESS_TOKEN_TTL", "1h")]);
        let error = AuthConfig::from_env(&env).unwrap_err();
        assert!(
            error.to_string().contains("MIRAI_ACCESS_TOKEN_TTL"),
            "{error}"
        );
    }
}
