//! Configuration of the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mirai_platform::bootstrap::Settings;
use mirai_platform::config::{ConfigError, Env, ShutdownConfig, TelemetryConfig};
use mirai_platform::grpc::client::ClientConfig;
use mirai_platform::grpc::identity::Identity;

pub const NAME: &str = "mirai-gateway";

/// How each upstream service is called: `MIRAI_<SERVICE>_URL` (one URL, a comma-separated
/// list, or `dns:///host:port` for a headless Service), the deadline, and the client's
/// resilience knobs (`MIRAI_CLIENT_*` / `MIRAI_<SERVICE>_*`).
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub user: ClientConfig,
    pub stock_data: ClientConfig,
    pub prediction: ClientConfig,
    pub analytics: ClientConfig,
    pub notification: ClientConfig,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Public API listener (`MIRAI_HTTP_ADDR`, default 0.0.0.0:8080).
    pub http_addr: SocketAddr,
    /// Admin listener (`MIRAI_ADMIN_ADDR`, default 0.0.0.0:9090).
    pub admin_addr: SocketAddr,
    /// `MIRAI_{USER,STOCK_DATA,PREDICTION,ANALYTICS,NOTIFICATION}_URL` and the client knobs;
    /// each call's deadline is `MIRAI_UPSTREAM_TIMEOUT` (default 5 s).
    pub upstreams: Upstreams,
    /// How long a quote may be served from the gateway's memory while stock-data is
    /// unavailable, marked with its age (`MIRAI_QUOTE_FALLBACK_MAX_AGE`, default 60 s; 0 = never).
    pub quote_fallback_max_age: Duration,
    /// `iss` access tokens must carry (`MIRAI_JWT_ISSUER`, default `https://mirai.local`; the
    /// user service's setting of the same name).
    pub jwt_issuer: String,
    /// `aud` access tokens must carry (`MIRAI_JWT_AUDIENCE`, default `mirai-api`).
    pub jwt_audience: String,
    /// The gateway's public base URL, for discovery metadata and `Location` headers
    /// (`MIRAI_PUBLIC_URL`, default the JWT issuer).
    pub public_url: String,
    /// Origins a browser may call the API from (`MIRAI_CORS_ORIGINS`, comma-separated, exact
    /// `scheme://host[:port]`; default none: cross-origin browser calls are refused).
    pub cors_origins: Vec<http::HeaderValue>,
    /// Largest request body outside the bulk import (`MIRAI_MAX_BODY`, bytes, default 1 MiB).
    pub max_body: usize,
    /// The built web console (`console/dist`), served at `/console/` when set
    /// (`MIRAI_CONSOLE_DIR`; it must hold `index.html`). Unset: no console.
    pub console_dir: Option<std::path::PathBuf>,
    /// `MIRAI_REDIS_URL`: when set, rate limits and idempotency records live in Redis and are
    /// shared by every replica; unset, each replica keeps its own in memory.
    pub redis_url: Option<String>,
    /// The CA certificate (PEM) that signs the Redis server's certificate, for a `rediss://`
    /// URL (`MIRAI_REDIS_CA_CERT`, a file path, e.g. Memorystore's server CA mounted from a
    /// Secret). Unset with `rediss://`: the system's trust store.
    pub redis_ca_cert: Option<Vec<u8>>,
    /// Prefix of every Redis key the gateway writes (`MIRAI_REDIS_PREFIX`, default `mirai:`).
    pub redis_prefix: String,
    /// How many proxies in front of the gateway append to `X-Forwarded-For` and are believed:
    /// the client IP is the entry this many places from the right (`MIRAI_TRUSTED_PROXY_HOPS`,
    /// default 0: the TCP peer). The rules are in [`crate::middleware::client`].
    pub trusted_proxy_hops: u8,
    pub rate_limits: RateLimits,
    pub auth_failures: AuthFailureLimits,
    pub streams: StreamLimits,
    /// Bounds of the idempotency records (`MIRAI_IDEMPOTENCY_MAX_ANSWER`, default 64 KiB;
    /// in process `MIRAI_IDEMPOTENCY_MAX_BYTES`, default 64 MiB, and
    /// `MIRAI_IDEMPOTENCY_MAX_RECORDS`, default 100,000).
    pub idempotency: crate::middleware::idempotency::Limits,
    pub shutdown: ShutdownConfig,
    pub telemetry: TelemetryConfig,
    /// The key that signs the internal identity token of every call to a service
    /// (`MIRAI_INTERNAL_SIGNING_KEY`; `MIRAI_INTERNAL_TRUSTED_KEYS` is read too, though the
    /// gateway serves no gRPC; both required with `MIRAI_PROFILE=production`).
    pub identity: Identity,
}

/// One rate-limit policy: `quota` requests per `window`, refilled continuously (GCRA, a token
/// bucket that holds `quota` tokens and regains one every `window / quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub quota: u32,
    pub window: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    /// `"<quota>/<duration>"`, e.g. `600/1m`, `20/1s`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (quota, window) = s
            .split_once('/')
            .ok_or_else(|| "expected <requests>/<duration>, e.g. 600/1m".to_owned())?;
        let quota: u32 = quota
            .trim()
            .parse()
            .map_err(|_| format!("`{quota}` is not a request count"))?;
        let window =
            humantime::parse_duration(window.trim()).map_err(|e| format!("`{window}`: {e}"))?;
        if quota == 0 || window.is_zero() {
            return Err("quota and window must be positive".to_owned());
        }
        Ok(Self { quota, window })
    }
}

/// The rate-limit policies.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Per authenticated principal, every route (`MIRAI_RATE_LIMIT_USER`, default `1200/1m`).
    pub user: Rate,
    /// Per principal holding `premium` or `admin` (`MIRAI_RATE_LIMIT_PREMIUM`, default `6000/1m`).
    pub premium: Rate,
    /// Per client IP for anonymous requests (`MIRAI_RATE_LIMIT_ANONYMOUS`, default `300/1m`).
    pub anonymous: Rate,
    /// Per client IP on `/v1/auth/*`, on top of the others: credential guessing is throttled
    /// before it reaches the user service's lockout (`MIRAI_RATE_LIMIT_AUTH`, default `20/1m`).
    pub auth: Rate,
    /// Per client IP, failed authentications (a bad token or API key); once spent, API keys
    /// from the IP are answered 429 before any lookup until it refills
    /// (`MIRAI_RATE_LIMIT_AUTH_FAILURES`, default `20/1m`).
    pub auth_failures: Rate,
}

/// What the gateway remembers about refused API keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailureLimits {
    /// How long an API key the user service refused is answered 401 without asking it again
    /// (`MIRAI_API_KEY_NEGATIVE_TTL`, default 30 s; 0 = not remembered).
    pub negative_ttl: Duration,
    /// Most refused keys remembered, least recently used forgotten first (10,000).
    pub negative_cache_entries: u64,
}

/// Bounds of the live quote streams (`GET /v1/stream/quotes`, SSE and WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Open streams per client IP (IPv6: per /64), signed in or not (`MIRAI_STREAMS_PER_IP`,
    /// default 20).
    pub per_ip: usize,
    /// Open streams per signed-in principal (`MIRAI_STREAMS_PER_USER`, default 10).
    pub per_user: usize,
    /// Symbols one stream may follow (`MIRAI_STREAM_MAX_SYMBOLS`, default 100).
    pub symbols: usize,
    /// Subscribe and unsubscribe messages per WebSocket (`MIRAI_STREAM_SUBSCRIBE_RATE`, default
    /// `30/1m`).
    pub subscribe_rate: Rate,
    /// Updates per symbol a client may fall behind before it is told and closed
    /// (`MIRAI_STREAM_BUFFER`, default 64).
    pub buffer: usize,
}

fn positive(env: &Env, name: &str, default: usize) -> Result<usize, ConfigError> {
    let value: usize = env.or(name, default)?;
    if value == 0 {
        return Err(ConfigError::Invalid {
            name: name.to_owned(),
            reason: "must be at least 1".to_owned(),
        });
    }
    Ok(value)
}

impl StreamLimits {
    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            per_ip: positive(env, "MIRAI_STREAMS_PER_IP", 20)?,
            per_user: positive(env, "MIRAI_STREAMS_PER_USER", 10)?,
            symbols: positive(env, "MIRAI_STREAM_MAX_SYMBOLS", 100)?,
            subscribe_rate: env.or(
                "MIRAI_STREAM_SUBSCRIBE_RATE",
                "30/1m".parse().expect("valid"),
            )?,
            buffer: positive(env, "MIRAI_STREAM_BUFFER", 64)?,
        })
    }
}

fn idempotency_limits(env: &Env) -> Result<crate::middleware::idempotency::Limits, ConfigError> {
    let default = crate::middleware::idempotency::Limits::default();
    Ok(crate::middleware::idempotency::Limits {
        max_answer: env.or("MIRAI_IDEMPOTENCY_MAX_ANSWER", default.max_answer)?,
        max_bytes: positive(env, "MIRAI_IDEMPOTENCY_MAX_BYTES", default.max_bytes)?,
        max_records: positive(env, "MIRAI_IDEMPOTENCY_MAX_RECORDS", default.max_records)?,
    })
}

fn upstream(
    env: &Env,
    name: &str,
    default_port: u16,
    timeout: Duration,
) -> Result<ClientConfig, ConfigError> {
    ClientConfig::from_env(
        env,
        name,
        &format!("http://127.0.0.1:{default_port}"),
        timeout,
    )
}

fn url_or(env: &Env, name: &str, default: &str) -> Result<String, ConfigError> {
    let value = env.or(name, default.to_owned())?;
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(ConfigError::Invalid {
            name: name.to_owned(),
            reason: "expected an http:// or https:// URL".to_owned(),
        });
    }
    Ok(value)
}

fn origins(env: &Env) -> Result<Vec<http::HeaderValue>, ConfigError> {
    let name = "MIRAI_CORS_ORIGINS";
    let Some(raw) = env.get(name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let invalid = |reason: &str| ConfigError::Invalid {
                name: name.to_owned(),
                reason: format!("`{origin}`: {reason}"),
            };
            if origin == "*" {
                return Err(invalid("a wildcard is not allowed; name each origin"));
            }
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .ok_or_else(|| invalid("expected scheme://host[:port]"))?;
            if rest.is_empty() || rest.contains('/') {
                return Err(invalid("expected scheme://host[:port] without a path"));
            }
            http::HeaderValue::from_str(origin).map_err(|_| invalid("not a valid header value"))
        })
        .collect()
}

/// Most trusted proxy hops accepted: real chains have one to three.
const MAX_TRUSTED_PROXY_HOPS: u8 = 10;

fn trusted_proxy_hops(env: &Env) -> Result<u8, ConfigError> {
    // The old switch believed the right-most hop, which is wrong behind Google's load balancer
    // (it appends two): refuse it loudly rather than ignore it.
    let old = "MIRAI_TRUST_FORWARDED_FOR";
    if env.get(old).is_some() {
        return Err(ConfigError::Invalid {
            name: old.to_owned(),
            reason: "this variable was removed: unset it and set MIRAI_TRUSTED_PROXY_HOPS to the \
                     number of proxies in front of the gateway that append to X-Forwarded-For \
                     (0 = none, use the TCP peer; 1 = the Istio ingress gateway; 2 = Google's \
                     load balancer; see gateway/README.md)"
                .to_owned(),
        });
    }
    let name = "MIRAI_TRUSTED_PROXY_HOPS";
    match env.get(name) {
        None => Ok(0),
        Some(raw) => raw
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|hops| *hops <= MAX_TRUSTED_PROXY_HOPS)
            .ok_or_else(|| ConfigError::Invalid {
                name: name.to_owned(),
                reason: format!(
                    "`{raw}`: expected the number of trusted proxies in front of the gateway, \
                     0–{MAX_TRUSTED_PROXY_HOPS}"
                ),
            }),
    }
}

/// `MIRAI_REDIS_URL` and `MIRAI_REDIS_CA_CERT`. A CA needs a `rediss://` URL, and the URL may
/// not turn certificate checks off (`#insecure`): both are mistakes better refused at start.
fn redis(env: &Env) -> Result<(Option<String>, Option<Vec<u8>>), ConfigError> {
    let url: Option<String> = env.optional("MIRAI_REDIS_URL")?;
    let tls = url.as_deref().is_some_and(|u| u.starts_with("rediss://"));
    if tls && url.as_deref().is_some_and(|u| u.contains("#insecure")) {
        return Err(ConfigError::Invalid {
            name: "MIRAI_REDIS_URL".to_owned(),
            reason: "`#insecure` turns certificate verification off; give the server's CA in \
                     MIRAI_REDIS_CA_CERT instead"
                .to_owned(),
        });
    }
    let Some(path) = env.optional::<PathBuf>("MIRAI_REDIS_CA_CERT")? else {
        return Ok((url, None));
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: "MIRAI_REDIS_CA_CERT".to_owned(),
        reason,
    };
    if !tls {
        return Err(invalid(
            "a CA certificate needs a rediss:// MIRAI_REDIS_URL (TLS)".to_owned(),
        ));
    }
    let pem = std::fs::read(&path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(invalid(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok((url, Some(pem)))
}

/// `MIRAI_CONSOLE_DIR`: a directory holding the console's `index.html`.
fn console_dir(env: &Env) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let name = "MIRAI_CONSOLE_DIR";
    let Some(dir) = env.get(name).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = std::path::PathBuf::from(dir);
    if !dir.join("index.html").is_file() {
        return Err(ConfigError::Invalid {
            name: name.to_owned(),
            reason: format!(
                "{} holds no index.html (build the console: cd console && npm ci && npm run build)",
                dir.display()
            ),
        });
    }
    Ok(Some(dir))
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let jwt_issuer = env.or("MIRAI_JWT_ISSUER", "https://mirai.local".to_owned())?;
        let timeout = env.duration_or("MIRAI_UPSTREAM_TIMEOUT", Duration::from_secs(5))?;
        let identity = Identity::from_env(env, NAME)?;
        identity.require_keys()?;
        let (redis_url, redis_ca_cert) = redis(env)?;
        Ok(Self {
            http_addr: env.or("MIRAI_HTTP_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            admin_addr: env.or("MIRAI_ADMIN_ADDR", SocketAddr::from(([0, 0, 0, 0], 9090)))?,
            upstreams: Upstreams {
                user: upstream(env, "USER", 50051, timeout)?,
                stock_data: upstream(env, "STOCK_DATA", 50052, timeout)?,
                prediction: upstream(env, "PREDICTION", 50053, timeout)?,
                analytics: upstream(env, "ANALYTICS", 50054, timeout)?,
                notification: upstream(env, "NOTIFICATION", 50055, timeout)?,
            },
            quote_fallback_max_age: env
                .duration_or("MIRAI_QUOTE_FALLBACK_MAX_AGE", Duration::from_secs(60))?,
            public_url: url_or(env, "MIRAI_PUBLIC_URL", &jwt_issuer)?,
            jwt_issuer,
            jwt_audience: env.or("MIRAI_JWT_AUDIENCE", "mirai-api".to_owned())?,
            cors_origins: origins(env)?,
            max_body: env.or("MIRAI_MAX_BODY", 1024 * 1024)?,
            console_dir: console_dir(env)?,
            redis_url,
            redis_ca_cert,
            redis_prefix: env.or("MIRAI_REDIS_PREFIX", "mirai:".to_owned())?,
            trusted_proxy_hops: trusted_proxy_hops(env)?,
            rate_limits: RateLimits {
                user: env.or("MIRAI_RATE_LIMIT_USER", "1200/1m".parse().expect("valid"))?,
                premium: env.or(
                    "MIRAI_RATE_LIMIT_PREMIUM",
                    "6000/1m".parse().expect("valid"),
                )?,
                anonymous: env.or(
                    "MIRAI_RATE_LIMIT_ANONYMOUS",
                    "300/1m".parse().expect("valid"),
                )?,
                auth: env.or("MIRAI_RATE_LIMIT_AUTH", "20/1m".parse().expect("valid"))?,
                auth_failures: env.or(
                    "MIRAI_RATE_LIMIT_AUTH_FAILURES",
                    "20/1m".parse().expect("valid"),
                )?,
            },
            auth_failures: AuthFailureLimits {
                negative_ttl: env
                    .duration_or("MIRAI_API_KEY_NEGATIVE_TTL", Duration::from_secs(30))?,
                negative_cache_entries: 10_000,
            },
            streams: StreamLimits::from_env(env)?,
            idempotency: idempotency_limits(env)?,
            shutdown: ShutdownConfig::from_env(env)?,
            telemetry: TelemetryConfig::from_env(env, NAME)?,
            identity: identity.with_request_id(crate::middleware::edge::current_request_id),
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
        assert_eq!(
            config.upstreams.notification.target.to_string(),
            "http://127.0.0.1:50055"
        );
        let config = Config::from_env(&Env::from_pairs([
            ("MIRAI_USER_URL", "http://a:1,http://b:1"),
            ("MIRAI_ANALYTICS_URL", "dns:///analytics-grpc:50054"),
            ("MIRAI_CLIENT_BREAKER_OPEN_WAIT", "9s"),
            ("MIRAI_ANALYTICS_BREAKER_OPEN_WAIT", "2s"),
        ]))
        .unwrap();
        assert_eq!(
            config.upstreams.user.target.to_string(),
            "http://a:1,http://b:1"
        );
        assert_eq!(
            config.upstreams.analytics.target.to_string(),
            "dns:///analytics-grpc:50054"
        );
        assert_eq!(
            config.upstreams.user.breaker.open_wait,
            Duration::from_secs(9)
        );
        assert_eq!(
            config.upstreams.analytics.breaker.open_wait,
            Duration::from_secs(2),
            "the upstream's own variable wins"
        );
        for (name, value) in [
            ("MIRAI_CLIENT_BREAKER_FAILURE_RATE", "150"),
            ("MIRAI_CLIENT_RETRY_ATTEMPTS", "0"),
            ("MIRAI_CLIENT_BREAKER_WINDOW", "0"),
            ("MIRAI_STOCK_DATA_RESILIENCE", "maybe"),
            ("MIRAI_NOTIFICATION_URL", "dns:///nohost"),
        ] {
            let err = Config::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{value}: {err}");
        }
        let err =
            Config::from_env(&Env::from_pairs([("MIRAI_USER_URL", "user:50051")])).unwrap_err();
        assert!(
            err.to_string().starts_with("MIRAI_USER_URL is invalid"),
            "{err}"
        );
    }

    #[test]
    fn the_old_forwarded_for_switch_is_refused_naming_its_replacement() {
        for value in ["true", "false"] {
            let err = Config::from_env(&Env::from_pairs([("MIRAI_TRUST_FORWARDED_FOR", value)]))
                .expect_err("the removed variable must not be ignored silently");
            let message = err.to_string();
            assert!(
                message.starts_with("MIRAI_TRUST_FORWARDED_FOR")
                    && message.contains("MIRAI_TRUSTED_PROXY_HOPS"),
                "{message}"
            );
        }
    }

    #[test]
    fn trusted_proxy_hops_default_to_the_peer_and_name_the_variable_when_wrong() {
        assert_eq!(
            Config::from_env(&Env::default())
                .unwrap()
                .trusted_proxy_hops,
            0
        );
        let config =
            Config::from_env(&Env::from_pairs([("MIRAI_TRUSTED_PROXY_HOPS", "2")])).unwrap();
        assert_eq!(config.trusted_proxy_hops, 2);
        for value in ["true", "-1", "11", "1.5"] {
            let err = Config::from_env(&Env::from_pairs([("MIRAI_TRUSTED_PROXY_HOPS", value)]))
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("MIRAI_TRUSTED_PROXY_HOPS is invalid"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn rates_and_origins_parse_or_name_the_variable() {
        let config = Config::from_env(&Env::from_pairs([
            ("MIRAI_RATE_LIMIT_AUTH", "5/10s"),
            (
                "MIRAI_CORS_ORIGINS",
                "https://app.mirai.dev, http://localhost:5173",
            ),
        ]))
        .unwrap();
        assert_eq!(
            config.rate_limits.auth,
            Rate {
                quota: 5,
                window: Duration::from_secs(10)
            }
        );
        assert_eq!(config.cors_origins.len(), 2);
        let config = Config::from_env(&Env::from_pairs([
            ("MIRAI_STREAMS_PER_IP", "3"),
            ("MIRAI_STREAM_SUBSCRIBE_RATE", "5/1s"),
            ("MIRAI_IDEMPOTENCY_MAX_RECORDS", "10"),
            ("MIRAI_API_KEY_NEGATIVE_TTL", "5s"),
        ]))
        .unwrap();
        assert_eq!(config.streams.per_ip, 3);
        assert_eq!(config.streams.per_user, 10, "default");
        assert_eq!(config.streams.subscribe_rate.quota, 5);
        assert_eq!(config.idempotency.max_records, 10);
        assert_eq!(config.auth_failures.negative_ttl, Duration::from_secs(5));
        for (name, value) in [
            ("MIRAI_STREAMS_PER_USER", "0"),
            ("MIRAI_STREAM_MAX_SYMBOLS", "many"),
            ("MIRAI_STREAM_SUBSCRIBE_RATE", "0/1s"),
            ("MIRAI_RATE_LIMIT_AUTH_FAILURES", "1"),
            ("MIRAI_IDEMPOTENCY_MAX_BYTES", "0"),
            ("MIRAI_RATE_LIMIT_USER", "0/1m"),
            ("MIRAI_RATE_LIMIT_USER", "lots"),
            ("MIRAI_CORS_ORIGINS", "*"),
            ("MIRAI_CORS_ORIGINS", "https://app.mirai.dev/path"),
            ("MIRAI_CORS_ORIGINS", "app.mirai.dev"),
            ("MIRAI_CONSOLE_DIR", "/nonexistent/console/dist"),
        ] {
            let err = Config::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{value}: {err}");
        }
    }

    #[test]
    fn a_redis_ca_needs_tls_a_readable_pem_and_no_insecure_url() {
        let dir = std::env::temp_dir().join(format!("mirai-gw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let not_pem = dir.join("key.txt");
        std::fs::write(&not_pem, "an AUTH string, not a certificate").unwrap();
        let ca = ca.to_str().unwrap();
        let config = Config::from_env(&Env::from_pairs([
            ("MIRAI_REDIS_URL", "rediss://:secret@10.0.0.3:6378/0"),
            ("MIRAI_REDIS_CA_CERT", ca),
        ]))
        .unwrap();
        assert!(
            config
                .redis_ca_cert
                .is_some_and(|pem| pem.starts_with(b"-----BEGIN"))
        );
        let refused = [
            ("redis://10.0.0.3:6379", ca, "needs a rediss://"),
            (
                "rediss://10.0.0.3:6378",
                "/nonexistent/ca.pem",
                "cannot read",
            ),
            (
                "rediss://10.0.0.3:6378",
                not_pem.to_str().unwrap(),
                "no PEM certificate",
            ),
        ];
        for (url, file, reason) in refused {
            let err = Config::from_env(&Env::from_pairs([
                ("MIRAI_REDIS_URL", url),
                ("MIRAI_REDIS_CA_CERT", file),
            ]))
            .unwrap_err()
            .to_string();
            assert!(
                err.starts_with("MIRAI_REDIS_CA_CERT") && err.contains(reason),
                "{err}"
            );
        }
        let err = Config::from_env(&Env::from_pairs([(
            "MIRAI_REDIS_URL",
            "rediss://10.0.0.3:6378/#insecure",
        )]))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("MIRAI_REDIS_URL") && err.contains("#insecure"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
