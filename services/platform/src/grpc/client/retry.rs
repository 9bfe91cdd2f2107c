//! Retries of calls that are safe to repeat, after gRFC A6 and the AWS builders' library.
//!
//! - Unary RPCs marked `idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT` in the protos
//!   ([`mirai_proto::methods`], generated from the descriptors) are retried when an attempt
//!   ended in `UNAVAILABLE` before any response message: a refused connection, a reset, a server
//!   shutting down.
//! - Every other unary RPC is retried only when its connection was refused: the request never
//!   left this process, so the upstream cannot have acted on it (gRFC A6's transparent retry).
//!   This is what keeps writes whole while a replica closes its listener in a rolling restart
//!   or lies dead until its breaker ejects it.
//! - Streams go through once. Deadlines, rejections made on this side (open circuit, full
//!   bulkhead) and every other code end the call.
//! - At most `max_attempts` attempts, with full-jitter exponential backoff
//!   (`random(0, min(max_backoff, backoff · 2^n))`); no attempt starts if its backoff would end
//!   past the caller's deadline, and each attempt carries only the time that is left.
//! - A retry budget (a token bucket over a sliding ten-second window: retries may add about
//!   `budget_percent` to the calls made, plus a small floor per second) keeps a struggling
//!   upstream from a retry storm.
//! - A retry avoids the endpoint that just failed, when there is another.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Full};
use prost::bytes::Bytes;
use rand::Rng as _;
use tonic::body::Body;
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Layer, Service, ServiceExt as _};

use super::balance::{LastEndpoint, is_rejection};
use super::metrics::ClientMetrics;
use super::never_sent;
use crate::grpc::deadline;

/// How calls are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 = no retries).
    pub max_attempts: u32,
    /// The backoff cap of the first retry; doubles for each further one.
    pub backoff: Duration,
    /// The largest backoff cap.
    pub max_backoff: Duration,
    /// Retries allowed, as a fraction of calls (0.1 = 10 %).
    pub budget_ratio: f32,
    /// Retries allowed per second whatever the traffic, so a quiet client still retries.
    pub budget_floor: u32,
}

impl Default for RetryConfig {
    /// gRPC's retry-policy shape (4 attempts, 0.1 s, ×2, 1 s cap) and a 10 % budget.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            budget_ratio: 0.1,
            budget_floor: 5,
        }
    }
}

impl RetryConfig {
    /// The full-jitter backoff before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let cap_micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(rand::rng().random_range(0..=cap_micros))
    }
}

/// The retry layer of one upstream.
#[derive(Clone)]
pub(super) struct RetryLayer {
    shared: Arc<Shared>,
}

struct Shared {
    upstream: &'static str,
    config: RetryConfig,
    budget: TpsBudget,
    metrics: ClientMetrics,
}

impl RetryLayer {
    pub fn new(upstream: &'static str, config: RetryConfig, metrics: ClientMetrics) -> Self {
        Self {
            shared: Arc::new(Shared {
                upstream,
                config,
                budget: TpsBudget::new(
                    Duration::from_secs(10),
                    config.budget_floor,
                    config.budget_ratio,
                ),
                metrics,
            }),
        }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

#[derive(Clone)]
pub(super) struct Retry<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Whether a finished attempt of a call may be tried again; `idempotent` when its method is
/// safe to repeat, else only an attempt that was never sent is.
fn retryable<B>(result: &Result<http::Response<B>, tonic::Status>, idempotent: bool) -> bool {
    match result {
        // Trailers-only answers carry their status in the headers.
        Ok(response) => {
            idempotent
                && response.headers().get("grpc-status").is_some_and(|code| {
                    tonic::Code::from_bytes(code.as_bytes()) == tonic::Code::Unavailable
                })
        }
        Err(status) => {
            status.code() == tonic::Code::Unavailable
                && !is_rejection(status)
                && (idempotent || never_sent(status))
        }
    }
}

impl<S> Service<http::Request<Body>> for Retry<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = tonic::Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = tonic::Status;
    type Future = BoxFuture<'static, Result<Self::Response, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        shared.budget.deposit();
        let inner = self.inner.clone();
        let method = mirai_proto::methods::lookup(request.uri().path());
        let unary = method.is_some_and(|m| !m.client_streaming && !m.server_streaming);
        if shared.config.max_attempts <= 1 || !unary {
            return Box::pin(inner.oneshot(request));
        }
        let idempotent = method.is_some_and(|m| m.retryable());
        Box::pin(async move {
            let deadline = request
                .headers()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(deadline::parse_grpc_timeout)
                .map(|timeout| tokio::time::Instant::now() + timeout);
            let (mut parts, body) = request.into_parts();
            // A unary request is one small message: keep it to send again.
            let bytes: Bytes = body.collect().await?.to_bytes();
            let last = LastEndpoint::default();
            parts.extensions.insert(last.clone());
            let mut attempt = 1;
            loop {
                let request =
                    http::Request::from_parts(parts.clone(), Body::new(Full::new(bytes.clone())));
                let result = inner.clone().oneshot(request).await;
                if attempt >= shared.config.max_attempts || !retryable(&result, idempotent) {
                    return result;
                }
                let backoff = shared.config.backoff(attempt);
                let now = tokio::time::Instant::now();
                if deadline.is_some_and(|deadline| now + backoff >= deadline) {
                    return result;
                }
                if !shared.budget.withdraw() {
                    shared.metrics.retry_throttled(shared.upstream);
                    return result;
                }
                shared.metrics.retried(shared.upstream);
                tracing::debug!(
                    message = "Retrying a call.",
                    upstream = shared.upstream,
                    path = parts.uri.path(),
                    attempt,
                    ?backoff
                );
                drop(result);
                tokio::time::sleep(backoff).await;
                attempt += 1;
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(tonic::Status::deadline_exceeded(format!(
                            "{}: the deadline passed while waiting to retry",
                            shared.upstream
                        )));
                    }
                    let millis = left.as_millis().clamp(1, 99_999_999);
                    parts.headers.insert(
                        "grpc-timeout",
                        http::HeaderValue::from_str(&format!("{millis}m")).expect("ASCII digits"),
                    );
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::telemetry::Metrics;

    const READ: &str = "/mirai.stock.v1.StockDataService/GetQuote";
    const WRITE: &str = "/mirai.user.v1.UserService/Register";

    fn answer(code: tonic::Code) -> Result<http::Response<Body>, tonic::Status> {
        let mut response = http::Response::new(Body::empty());
        if code != tonic::Code::Ok {
            response
                .headers_mut()
                .insert("grpc-status", http::HeaderValue::from(code as i32));
        }
        Ok(response)
    }

    fn request(path: &str, timeout: Option<&'static str>) -> http::Request<Body> {
        let mut request = http::Request::builder()
            .uri(format!("http://upstream{path}"))
            .body(Body::new(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi"))))
            .unwrap();
        if let Some(timeout) = timeout {
            request
                .headers_mut()
                .insert("grpc-timeout", http::HeaderValue::from_static(timeout));
        }
        request
    }

    type Upstream =
        tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, tonic::Status>;

    /// An upstream that answers with `script` in turn (its last entry from then on), and
    /// counts the calls and the bodies it saw.
    fn upstream(script: Vec<tonic::Code>) -> (Upstream, Arc<AtomicU32>, Arc<Mutex<Vec<Bytes>>>) {
        let calls = Arc::new(AtomicU32::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (Arc::clone(&calls), Arc::clone(&bodies));
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let n = counter.fetch_add(1, Ordering::SeqCst) as usize;
            let code = script[n.min(script.len() - 1)];
            let seen = Arc::clone(&seen);
            async move {
                let body = request.into_body().collect().await?.to_bytes();
                seen.lock().unwrap().push(body);
                answer(code)
            }
        });
        (Upstream::new(service), calls, bodies)
    }

    fn layer(config: RetryConfig) -> RetryLayer {
        RetryLayer::new(
            "stock-data",
            config,
            ClientMetrics::register(&Metrics::new()),
        )
    }

    fn code(result: &Result<http::Response<Body>, tonic::Status>) -> tonic::Code {
        match result {
            Ok(response) => response
                .headers()
                .get("grpc-status")
                .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes())),
            Err(status) => status.code(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_fails_once_with_unavailable_succeeds() {
        let (upstream, calls, bodies) = upstream(vec![tonic::Code::Unavailable, tonic::Code::Ok]);
        let result = layer(RetryConfig::default())
            .layer(upstream)
            .oneshot(request(READ, Some("5S")))
            .await;
        assert_eq!(code(&result), tonic::Code::Ok);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies[0], bodies[1], "the same message sent again");
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_that_is_not_idempotent_is_never_retried() {
        let (upstream, calls, _) = upstream(vec![tonic::Code::Unavailable, tonic::Code::Ok]);
        let result = layer(RetryConfig::default())
            .layer(upstream)
            .oneshot(request(WRITE, Some("5S")))
            .await;
        assert_eq!(code(&result), tonic::Code::Unavailable);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the upstream saw exactly one call"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_left_is_retried_and_one_that_did_is_not() {
        for (not_sent, attempts) in [(true, 2), (false, 1)] {
            let calls = Arc::new(AtomicU32::new(0));
            let counter = Arc::clone(&calls);
            let upstream = tower::service_fn(move |_: http::Request<Body>| {
                let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
                Box::pin(async move {
                    if !first {
                        return answer(tonic::Code::Ok);
                    }
                    let error: tower::BoxError = if not_sent {
                        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                    } else {
                        Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                    };
                    Err(super::super::upstream_status("user", "http://a", error))
                })
                    as BoxFuture<'static, Result<http::Response<Body>, tonic::Status>>
            });
            let result = layer(RetryConfig::default())
                .layer(upstream)
                .oneshot(request(WRITE, Some("5S")))
                .await;
            assert_eq!(
                calls.load(Ordering::SeqCst),
                attempts,
                "not sent: {not_sent}"
            );
            let expected = if not_sent {
                tonic::Code::Ok
            } else {
                tonic::Code::Unavailable
            };
            assert_eq!(code(&result), expected);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn other_codes_and_local_rejections_are_not_retried() {
        for script in [
            vec![tonic::Code::DeadlineExceeded],
            vec![tonic::Code::NotFound],
            vec![tonic::Code::Internal],
        ] {
            let (upstream, calls, _) = upstream(script);
            layer(RetryConfig::default())
                .layer(upstream)
                .oneshot(request(READ, None))
                .await
                .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
        let calls = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let open = tower::service_fn(move |_: http::Request<Body>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let status = super::super::rejection(
                "stock-data",
                tonic::Status::unavailable("circuit open"),
                "circuit-open",
                Duration::from_secs(3),
            );
            Box::pin(async move { Err(status) })
                as BoxFuture<'static, Result<http::Response<Body>, tonic::Status>>
        });
        let result = layer(RetryConfig::default())
            .layer(open)
            .oneshot(request(READ, None))
            .await;
        assert_eq!(code(&result), tonic::Code::Unavailable);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never retried while open");
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_starts_after_the_deadline() {
        let (upstream, calls, _) = upstream(vec![tonic::Code::Unavailable]);
        let config = RetryConfig {
            max_attempts: 100,
            backoff: Duration::from_millis(400),
            max_backoff: Duration::from_millis(400),
            ..RetryConfig::default()
        };
        let started = tokio::time::Instant::now();
        let result = layer(config)
            .layer(upstream)
            .oneshot(request(READ, Some("1S")))
            .await;
        assert_eq!(code(&result), tonic::Code::Unavailable);
        assert!(
            started.elapsed() <= Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert!(calls.load(Ordering::SeqCst) >= 2, "some retries happened");
        assert!(calls.load(Ordering::SeqCst) < 100);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_stops_retries_when_most_calls_fail() {
        let (upstream, calls, _) = upstream(vec![tonic::Code::Unavailable]);
        let layer = layer(RetryConfig {
            budget_floor: 1,
            ..RetryConfig::default()
        });
        let mut service = layer.layer(upstream);
        for _ in 0..500 {
            let result = (&mut service).oneshot(request(READ, Some("5S"))).await;
            assert_eq!(code(&result), tonic::Code::Unavailable);
        }
        let calls = calls.load(Ordering::SeqCst);
        // Without a budget: 2,000 attempts. With it: 10 % of 500 plus the floor's reserve.
        assert!(calls <= 500 + 50 + 10 + 5, "{calls} attempts for 500 calls");
        assert!(calls > 500, "some retries were allowed");
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let config = RetryConfig::default();
        for retry in 1..=6 {
            let cap = Duration::from_millis(100 * (1 << (retry - 1))).min(Duration::from_secs(1));
            for _ in 0..200 {
                assert!(config.backoff(retry) <= cap);
            }
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| config.backoff(3)).collect();
        assert!(spread.len() > 10, "jittered");
    }
}
