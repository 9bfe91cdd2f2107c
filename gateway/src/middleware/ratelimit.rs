//! Rate limits per principal and per client IP, with `RateLimit-Policy` / `RateLimit` headers
//! (draft-ietf-httpapi-ratelimit-headers) and `429` + `Retry-After`.
//!
//! Every policy is GCRA — a token bucket holding `quota` tokens that regains one every
//! `window / quota` — either in process ([`governor`]) or, when Redis is configured, in Redis
//! (one Lua script, the same arithmetic, Redis's clock), so every replica draws from the same
//! bucket. Authenticated requests count against their principal (premium accounts get more);
//! anonymous ones against their IP; `/v1/auth/*` additionally against a strict per-IP policy.
//! An IPv6 client is keyed by its /64 (one subscriber's prefix: a host picks any address in
//! it), an IPv4 client by its address ([`client_key`]).
//! If Redis cannot be reached the request is let through (and counted in
//! `mirai_rate_limit_errors_total`): an outage of the limiter must not become an outage of the
//! API.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use mirai_platform::auth::{Principal, Role};
use mirai_platform::telemetry::Metrics;
use prometheus_client::metrics::counter::Counter;
use redis::aio::ConnectionManager;

use crate::config::{Rate, RateLimits};
use crate::middleware::edge::{RATE_LIMIT, RATE_LIMIT_POLICY};
use crate::problem::Problem;

/// The outcome of one check against one policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When refused: until one request is allowed again.
    pub retry_after: Duration,
}

type Keyed = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// One named policy and where its buckets live.
pub struct Policy {
    pub name: &'static str,
    pub rate: Rate,
    store: Store,
}

enum Store {
    Memory(Keyed),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

/// GCRA over Redis's own clock (so replicas with skewed clocks agree). KEYS[1]: the bucket;
/// ARGV[1]: the emission interval `window / quota` and ARGV[2]: the window, both in µs.
/// Returns {allowed, remaining, reset µs, retry-after µs}.
const GCRA: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > window then
  return {0, 0, tat - now, ahead - window}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(ahead / 1000))
return {1, math.floor((window - ahead) / interval), ahead, 0}
"#;

/// The key that per-IP limits count a client under: an IPv4 address as is, an IPv6 address
/// as its /64 (`2001:db8:1:2::/64`), `unknown` without one.
pub fn client_key(ip: Option<IpAddr>) -> String {
    match ip.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
        None => "unknown".to_owned(),
    }
}

impl Policy {
    /// In Redis when `redis` is given (keys under its prefix), else in process.
    pub fn new(name: &'static str, rate: Rate, redis: Option<&(ConnectionManager, &str)>) -> Self {
        match redis {
            Some((connection, prefix)) => Self::redis(name, rate, connection.clone(), prefix),
            None => Self::memory(name, rate),
        }
    }

    pub(crate) fn memory(name: &'static str, rate: Rate) -> Self {
        let period = rate.window / rate.quota;
        let burst = NonZeroU32::new(rate.quota).expect("validated positive");
        let quota = governor::Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("positive period")
            .allow_burst(burst);
        Self {
            name,
            rate,
            store: Store::Memory(
                governor::RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
        }
    }

    fn redis(name: &'static str, rate: Rate, connection: ConnectionManager, prefix: &str) -> Self {
        Self {
            name,
            rate,
            store: Store::Redis {
                connection,
                prefix: format!("{prefix}rl:{name}:"),
            },
        }
    }

    /// Takes one token from `key`'s bucket.
    pub async fn check(&self, key: &str) -> Result<Decision, redis::RedisError> {
        let interval = self.rate.window / self.rate.quota;
        match &self.store {
            Store::Memory(limiter) => Ok(match limiter.check_key(&key.to_owned()) {
                Ok(snapshot) => {
                    let remaining = snapshot.remaining_burst_capacity();
                    Decision {
                        allowed: true,
                        remaining,
                        reset: interval * (self.rate.quota - remaining),
                        retry_after: Duration::ZERO,
                    }
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    Decision {
                        allowed: false,
                        remaining: 0,
                        reset: self.rate.window,
                        retry_after: wait,
                    }
                }
            }),
            Store::Redis { connection, prefix } => {
                let (allowed, remaining, reset, retry): (i64, i64, i64, i64) =
                    redis::Script::new(GCRA)
                        .key(format!("{prefix}{key}"))
                        .arg(interval.as_micros() as u64)
                        .arg(self.rate.window.as_micros() as u64)
                        .invoke_async(&mut connection.clone())
                        .await?;
                let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
                Ok(Decision {
                    allowed: allowed == 1,
                    remaining: remaining.clamp(0, u32::MAX as i64) as u32,
                    reset: micros(reset),
                    retry_after: micros(retry),
                })
            }
        }
    }

    /// Forgets in-process buckets that are full again (they hold nothing worth keeping).
    pub fn prune(&self) {
        if let Store::Memory(limiter) = &self.store {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Every policy, and the counter of limiter failures.
pub struct RateLimiter {
    user: Policy,
    premium: Policy,
    anonymous: Policy,
    auth: Policy,
    /// Failed authentications per client IP (drawn by [`crate::middleware::auth::FailureGuard`]).
    auth_failures: Arc<Policy>,
    errors: Counter,
}

impl RateLimiter {
    /// In-process buckets, or Redis ones when `redis` is given (keys under `prefix`).
    pub fn new(
        limits: &RateLimits,
        redis: Option<(ConnectionManager, &str)>,
        metrics: &Metrics,
    ) -> Self {
        let make = |name, rate| Policy::new(name, rate, redis.as_ref());
        Self {
            user: make("user", limits.user),
            premium: make("premium", limits.premium),
            anonymous: make("anonymous", limits.anonymous),
            auth: make("auth", limits.auth),
            auth_failures: Arc::new(make("auth-failures", limits.auth_failures)),
            errors: metrics.register(
                "rate_limit_errors",
                "Rate-limit checks that failed (Redis unreachable); those requests were let through.",
                Counter::default(),
            ),
        }
    }

    /// Prunes in-process buckets every minute until `stop`.
    pub async fn prune_periodically(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for policy in [
                &self.user,
                &self.premium,
                &self.anonymous,
                &self.auth,
                &self.auth_failures,
            ] {
                policy.prune();
            }
        }
    }

    /// The failed-authentication policy, for [`crate::middleware::auth::FailureGuard`].
    pub fn auth_failures(&self) -> Arc<Policy> {
        self.auth_failures.clone()
    }

    /// The policies that apply to a request, with the key of each.
    fn applicable(&self, request: &Request) -> Vec<(&Policy, String)> {
        let ip = client_key(crate::middleware::client::client_ip(
            request.headers(),
            request.extensions(),
        ));
        let mut policies = Vec::with_capacity(2);
        match request.extensions().get::<Principal>() {
            Some(principal) if principal.has(Role::Premium) || principal.has(Role::Admin) => {
                policies.push((&self.premium, principal.user_id.clone()));
            }
            Some(principal) => policies.push((&self.user, principal.user_id.clone())),
            None => policies.push((&self.anonymous, ip.clone())),
        }
        if request.uri().path().starts_with("/v1/auth/") {
            policies.push((&self.auth, ip));
        }
        policies
    }
}

fn header(value: String) -> HeaderValue {
    HeaderValue::try_from(value).expect("ASCII header")
}

/// Middleware (after authentication): refuses with 429 when any applicable policy is
/// exhausted; otherwise answers with the headers of the most constrained one.
pub async fn limit(
    State(limiter): State<Arc<RateLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let mut tightest: Option<(&Policy, Decision)> = None;
    for (policy, key) in limiter.applicable(&request) {
        let decision = match policy.check(&key).await {
            Ok(decision) => decision,
            Err(error) => {
                limiter.errors.inc();
                tracing::warn!(message = "Rate limiter unavailable; request let through.", %error);
                continue;
            }
        };
        let tighter = match &tightest {
            None => true,
            Some((_, best)) => {
                (!decision.allowed && best.allowed) || decision.remaining < best.remaining
            }
        };
        if tighter {
            tightest = Some((policy, decision));
        }
        if !decision.allowed {
            break;
        }
    }
    let Some((policy, decision)) = tightest else {
        return next.run(request).await;
    };
    let policy_header = header(format!(
        "\"{}\";q={};w={}",
        policy.name,
        policy.rate.quota,
        policy.rate.window.as_secs().max(1)
    ));
    let state_header = header(format!(
        "\"{}\";r={};t={}",
        policy.name,
        decision.remaining,
        decision.reset.as_secs_f64().ceil() as u64
    ));
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
        )
        .detail(format!(
            "rate limit `{}` ({} requests per {}) exceeded; retry later",
            policy.name,
            policy.rate.quota,
            humantime::format_duration(policy.rate.window)
        ))
        .retry_after(decision.retry_after.as_secs_f64().ceil() as u64)
        .into_response()
    };
    response
        .headers_mut()
        .insert(RATE_LIMIT_POLICY, policy_header);
    response.headers_mut().insert(RATE_LIMIT, state_header);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_ipv4_ones_by_address() {
        let key = |text: &str| client_key(Some(text.parse().unwrap()));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            key("2001:db8:1:2::7"),
            "one /64 is one client"
        );
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7", "mapped IPv4");
        assert_eq!(client_key(None), "unknown");
    }

    #[tokio::test]
    async fn a_bucket_allows_its_quota_then_refuses() {
        let policy = Policy::memory(
            "test",
            Rate {
                quota: 3,
                window: Duration::from_secs(60),
            },
        );
        let remaining: Vec<u32> = [
            policy.check("k").await.unwrap(),
            policy.check("k").await.unwrap(),
            policy.check("k").await.unwrap(),
        ]
        .iter()
        .map(|d| {
            assert!(d.allowed);
            d.remaining
        })
        .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = policy.check("k").await.unwrap();
        assert!(!refused.allowed);
        // One token comes back every 20 s.
        assert!(
            refused.retry_after > Duration::from_secs(19)
                && refused.retry_after <= Duration::from_secs(20),
            "{refused:?}"
        );
        assert!(
            policy.check("other").await.unwrap().allowed,
            "keys are independent"
        );
    }
}
