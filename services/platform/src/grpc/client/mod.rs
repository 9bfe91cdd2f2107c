//! Outgoing gRPC calls: one builder for every typed client.
//!
//! Every generated client is built as `FooClient::new(client.channel())`, where `client` comes
//! from [`Client::build`]. A call then passes these layers, outer to inner:
//!
//! 1. **Client span** ([`Traced`]): `grpc.client`, the parent of the upstream's server span.
//! 2. **Context** ([`OutgoingContext`]): the current span's `traceparent`, a `grpc-timeout`
//!    no longer than the incoming call's remaining deadline (or the default timeout) with the
//!    same deadline as an absolute time ([`deadline::DEADLINE_HEADER`]), and the
//!    signed internal identity token (`x-mirai-identity`, [`super::identity`]) addressed to the
//!    upstream, acting for the principal [attached](crate::auth::Principal::attach) to the
//!    request if any, else for nobody (this process as itself).
//! 3. **Bulkhead** (`bulkhead`): at most `max_concurrency` calls of this process in flight to
//!    the upstream; beyond that `UNAVAILABLE` at once.
//! 4. **Retry** (`retry`): unary calls marked `NO_SIDE_EFFECTS`/`IDEMPOTENT` in the protos are
//!    retried on `UNAVAILABLE`, with full-jitter backoff, inside the deadline and a retry budget.
//! 5. **Balancer and circuit breakers** (`balance`, [`breaker`]): the upstream's endpoints (a
//!    list, or DNS names re-resolved for a headless Service), each with its own channel and its
//!    own circuit breaker; a call goes to the less busy of two admitted endpoints, and an
//!    endpoint whose breaker is open is ejected. With every endpoint open, the call is refused
//!    at once with `UNAVAILABLE`, the upstream named and the time left.
//!
//! The breakers sit below the retry layer, one per endpoint, so a retry can move to a healthy
//! replica while a dead one is ejected; a call refused by open breakers (or a full bulkhead) is
//! never retried, so nothing is retried while the upstream's circuit is open. This is the only
//! retrying layer of a call path: the mesh is configured not to retry what these clients retry.
//!
//! Errors that happen on this side carry metadata the gateway reads: `mirai-upstream` (which
//! upstream), `mirai-rejected` (why it was refused here) and `retry-after` (whole seconds).

mod balance;
pub mod breaker;
mod bulkhead;
mod metrics;
mod retry;
mod span;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::Injector;
use tonic::body::Body;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use self::balance::{EndpointStatus, Endpoints};
pub use self::breaker::{BreakerConfig, State, Window};
pub use self::metrics::ClientMetrics;
pub use self::retry::RetryConfig;
pub use self::span::Traced;
use super::deadline;
use super::identity::{IDENTITY_HEADER, REQUEST_ID_HEADER, Signer};
use crate::auth::OnBehalfOf;
use crate::config::{ConfigError, Env};
use crate::telemetry::Metrics;

/// Metadata naming the upstream an error came from.
pub const UPSTREAM: &str = "mirai-upstream";
/// Metadata on a `RESOURCE_EXHAUSTED` a server answered because it shed the call (overload),
/// not because a quota of the caller ran out.
pub const OVERLOADED: &str = "mirai-overloaded";
/// Metadata on a call refused on this side: `circuit-open`, `bulkhead-full`, `no-endpoints`.
pub const REJECTED: &str = "mirai-rejected";
/// Metadata on a transport failure that happened before the request left this process (the
/// connection was refused), so the upstream never saw the call.
const NOT_SENT: &str = "mirai-not-sent";

/// The resilience stack below the context interceptor.
pub type Stack = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, tonic::Status>;

/// The channel every typed client is built on.
pub type UpstreamChannel = Traced<InterceptedService<Stack, OutgoingContext>>;

/// Codes that count as failures for a circuit breaker: the upstream could not answer. Every
/// other code is an answer (a client error is the caller's problem, not the upstream's health).
/// `RESOURCE_EXHAUSTED` counts only when the upstream shed the call (`shed`: its
/// `mirai-overloaded` metadata); otherwise it is a quota answered for one caller (a locked-out
/// account, a per-user limit), and counting those let one client's failed logins open the
/// circuit to the user service for everyone.
pub fn is_failure(code: tonic::Code, shed: bool) -> bool {
    match code {
        tonic::Code::Unavailable
        | tonic::Code::DeadlineExceeded
        | tonic::Code::Internal
        | tonic::Code::Unknown => true,
        tonic::Code::ResourceExhausted => shed,
        _ => false,
    }
}

/// Marks `status` as a call to `upstream` refused on this side, with the time after which to
/// try again.
pub(crate) fn rejection(
    upstream: &'static str,
    mut status: tonic::Status,
    why: &'static str,
    retry_in: Duration,
) -> tonic::Status {
    let seconds = retry_in.as_secs_f64().ceil().max(1.0) as u64;
    let metadata = status.metadata_mut();
    metadata.insert(UPSTREAM, MetadataValue::from_static(upstream));
    metadata.insert(REJECTED, MetadataValue::from_static(why));
    metadata.insert("retry-after", MetadataValue::from(seconds));
    status
}

/// A transport failure of a call to `upstream` at `endpoint` (no response), as the status the
/// caller sees: DEADLINE_EXCEEDED when the deadline ran out, else UNAVAILABLE.
pub(crate) fn upstream_status(
    upstream: &'static str,
    endpoint: &str,
    error: BoxError,
) -> tonic::Status {
    let (mut timed_out, mut refused) = (false, false);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
    while let Some(error) = source {
        timed_out |= error.is::<tonic::TimeoutExpired>();
        refused |= error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        source = error.source();
    }
    let mut status = if timed_out {
        tonic::Status::deadline_exceeded(format!("{upstream} did not answer within the deadline"))
    } else {
        // No response came back: the connection failed or broke under the call (refused,
        // reset, closed by a process that died). gRPC calls that UNAVAILABLE, whatever the
        // transport's own words, which also makes a read caught on a dying replica retryable.
        let status = tonic::Status::from_error(error);
        tonic::Status::unavailable(format!("{upstream} at {endpoint}: {}", status.message()))
    };
    status
        .metadata_mut()
        .insert(UPSTREAM, MetadataValue::from_static(upstream));
    if refused && !timed_out {
        status
            .metadata_mut()
            .insert(NOT_SENT, MetadataValue::from_static("connection-refused"));
    }
    status
}

/// True when the call failed before its request left this process (a refused connection): the
/// upstream never saw it, so it may be sent again whatever its idempotency (gRFC A6's
/// transparent retry).
pub(super) fn never_sent(status: &tonic::Status) -> bool {
    status.metadata().contains_key(NOT_SENT)
}

// === Target ===

/// Where an upstream's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Fixed endpoints: `http://a:50051[,http://b:50051…]`.
    Static(Vec<String>),
    /// `dns:///host:port`: every address the name resolves to, re-resolved periodically (a
    /// Kubernetes headless Service).
    Dns { host: String, port: u16 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Static(uris) => f.write_str(&uris.join(",")),
            Target::Dns { host, port } => write!(f, "dns:///{host}:{port}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        if let Some(rest) = raw
            .strip_prefix("dns:///")
            .or_else(|| raw.strip_prefix("dns://"))
        {
            let (host, port) = rest.rsplit_once(':').ok_or("expected dns:///host:port")?;
            let port = port
                .parse()
                .map_err(|_| format!("`{port}` is not a port"))?;
            if host.is_empty() || host.contains('/') {
                return Err("expected dns:///host:port".to_owned());
            }
            return Ok(Target::Dns {
                host: host.to_owned(),
                port,
            });
        }
        let uris: Vec<String> = raw
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if uris.is_empty() {
            return Err("no endpoint given".to_owned());
        }
        for uri in &uris {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(format!(
                    "`{uri}`: expected http://host:port (a comma-separated list) or dns:///host:port"
                ));
            }
            Endpoint::from_shared(uri.clone()).map_err(|e| format!("`{uri}`: {e}"))?;
        }
        Ok(Target::Static(uris))
    }
}

// === Configuration ===

/// How calls to one upstream are made. [`ClientConfig::from_env`] reads each knob from
/// `MIRAI_<UPSTREAM>_<KNOB>`, else `MIRAI_CLIENT_<KNOB>`, else the default.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// Where the upstream's endpoints come from (`MIRAI_<UPSTREAM>_URL`).
    pub target: Target,
    /// Deadline of a call made outside any incoming call (the service's own setting).
    pub timeout: Duration,
    /// `RESILIENCE` (default on): off leaves only balancing, for comparisons.
    pub resilience: bool,
    /// `MAX_CONCURRENCY` (default 512; 0 = no bulkhead): calls in flight to this upstream.
    pub max_concurrency: usize,
    /// `BULKHEAD_WAIT` (default 0): how long a call waits for a bulkhead slot.
    pub bulkhead_wait: Duration,
    /// `BREAKER_WINDOW` (20 calls, or `30s`), `BREAKER_MIN_CALLS` (10),
    /// `BREAKER_FAILURE_RATE` (50), `BREAKER_SLOW_CALL_RATE` (100), `BREAKER_SLOW_CALL` (2s),
    /// `BREAKER_OPEN_WAIT` (5s), `BREAKER_HALF_OPEN_CALLS` (3).
    pub breaker: BreakerConfig,
    /// `RETRY_ATTEMPTS` (4), `RETRY_BACKOFF` (100ms), `RETRY_MAX_BACKOFF` (1s),
    /// `RETRY_BUDGET` (10, percent of calls), `RETRY_BUDGET_FLOOR` (5 retries/s).
    pub retry: RetryConfig,
    /// `RESOLVE_INTERVAL` (default 10s): how often a `dns:///` target is re-resolved.
    pub resolve_interval: Duration,
}

impl ClientConfig {
    /// Defaults for `target`.
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            resilience: true,
            max_concurrency: 512,
            bulkhead_wait: Duration::ZERO,
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
            resolve_interval: Duration::from_secs(10),
        }
    }

    /// The defaults for one `http://` URL (tests and examples).
    pub fn for_url(url: &str, timeout: Duration) -> Self {
        Self::new(Target::Static(vec![url.to_owned()]), timeout)
    }

    /// Reads the upstream `name` (`STOCK_DATA`: `MIRAI_STOCK_DATA_URL`, …), whose URL defaults
    /// to `default_url`.
    pub fn from_env(
        env: &Env,
        name: &str,
        default_url: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let url_var = format!("MIRAI_{name}_URL");
        let target = env.or(
            &url_var,
            default_url
                .parse::<Target>()
                .map_err(|reason| ConfigError::Invalid {
                    name: url_var.clone(),
                    reason,
                })?,
        )?;
        let d = Self::new(target, timeout);
        let knob = |knob: &str| -> String {
            let own = format!("MIRAI_{name}_{knob}");
            if env.get(&own).is_some() {
                own
            } else {
                format!("MIRAI_CLIENT_{knob}")
            }
        };
        let percent = |k: &str, default: f64| -> Result<f64, ConfigError> {
            let var = knob(k);
            let value: f64 = env.or(&var, default)?;
            if !(0.0..=100.0).contains(&value) {
                return Err(ConfigError::Invalid {
                    name: var,
                    reason: "a percentage from 0 to 100".to_owned(),
                });
            }
            Ok(value)
        };
        let at_least_one = |k: &str, default: u32| -> Result<u32, ConfigError> {
            let var = knob(k);
            let value: u32 = env.or(&var, default)?;
            if value == 0 {
                return Err(ConfigError::Invalid {
                    name: var,
                    reason: "must be at least 1".to_owned(),
                });
            }
            Ok(value)
        };
        Ok(Self {
            resilience: env.or(&knob("RESILIENCE"), OnOff(true))?.0,
            max_concurrency: env.or(&knob("MAX_CONCURRENCY"), d.max_concurrency)?,
            bulkhead_wait: env.duration_or(&knob("BULKHEAD_WAIT"), d.bulkhead_wait)?,
            breaker: BreakerConfig {
                window: env.or(&knob("BREAKER_WINDOW"), d.breaker.window)?,
                minimum_calls: at_least_one("BREAKER_MIN_CALLS", d.breaker.minimum_calls)?,
                failure_rate: percent("BREAKER_FAILURE_RATE", d.breaker.failure_rate)?,
                slow_call_rate: percent("BREAKER_SLOW_CALL_RATE", d.breaker.slow_call_rate)?,
                slow_call: env.duration_or(&knob("BREAKER_SLOW_CALL"), d.breaker.slow_call)?,
                open_wait: env.duration_or(&knob("BREAKER_OPEN_WAIT"), d.breaker.open_wait)?,
                half_open_calls: at_least_one(
                    "BREAKER_HALF_OPEN_CALLS",
                    d.breaker.half_open_calls,
                )?,
            },
            retry: RetryConfig {
                max_attempts: at_least_one("RETRY_ATTEMPTS", d.retry.max_attempts)?,
                backoff: env.duration_or(&knob("RETRY_BACKOFF"), d.retry.backoff)?,
                max_backoff: env.duration_or(&knob("RETRY_MAX_BACKOFF"), d.retry.max_backoff)?,
                budget_ratio: (percent("RETRY_BUDGET", f64::from(d.retry.budget_ratio) * 100.0)?
                    / 100.0) as f32,
                budget_floor: env.or(&knob("RETRY_BUDGET_FLOOR"), d.retry.budget_floor)?,
            },
            resolve_interval: env.duration_or(&knob("RESOLVE_INTERVAL"), d.resolve_interval)?,
            ..d
        })
    }
}

/// `on`/`off` (also `true`/`false`, `1`/`0`).
#[derive(Debug, Clone, Copy)]
struct OnOff(bool);

impl std::str::FromStr for OnOff {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Ok(OnOff(true)),
            "off" | "false" | "0" | "no" => Ok(OnOff(false)),
            _ => Err("expected on or off"),
        }
    }
}

// === Client ===

/// One upstream as its callers see it: the channel to build typed clients on, and its
/// endpoints' health.
#[derive(Clone, Debug)]
pub struct Client {
    channel: UpstreamChannel,
    endpoints: Arc<Endpoints>,
}

impl Client {
    /// The client of `upstream` (a short name used in metrics, logs and errors: `stock-data`;
    /// its calls' tokens are addressed to `mirai-<upstream>` and signed by `signer`).
    /// Connections are lazy: problems surface as `UNAVAILABLE` on the first call, never at
    /// startup, so services start in any order. Needs a Tokio runtime (a DNS target starts its
    /// resolver task).
    pub fn build(
        upstream: &'static str,
        config: &ClientConfig,
        metrics: &Metrics,
        signer: &Arc<Signer>,
    ) -> Self {
        let metrics = ClientMetrics::register(metrics);
        let endpoints = Endpoints::new(
            upstream,
            &config.target,
            config.breaker,
            config.resilience,
            config.resolve_interval,
            metrics.clone(),
        );
        let on = config.resilience;
        let stack = ServiceBuilder::new()
            .layer(bulkhead::BulkheadLayer::new(
                upstream,
                if on { config.max_concurrency } else { 0 },
                config.bulkhead_wait,
                metrics.clone(),
            ))
            .layer(retry::RetryLayer::new(
                upstream,
                RetryConfig {
                    max_attempts: if on { config.retry.max_attempts } else { 1 },
                    ..config.retry
                },
                metrics.clone(),
            ))
            .service(balance::Balance {
                endpoints: Arc::clone(&endpoints),
            });
        Self {
            channel: Traced::new(
                InterceptedService::new(
                    BoxCloneSyncService::new(stack),
                    OutgoingContext::new(
                        config.timeout,
                        Arc::clone(signer),
                        &format!("mirai-{upstream}"),
                    ),
                ),
                upstream,
            ),
            endpoints,
        }
    }

    /// The channel for `FooServiceClient::new(..)`. Cheap to clone.
    pub fn channel(&self) -> UpstreamChannel {
        self.channel.clone()
    }

    /// The upstream's endpoints, their circuits and load.
    pub fn endpoints(&self) -> &Arc<Endpoints> {
        &self.endpoints
    }
}

/// A lazily connecting channel to one endpoint `url` (`http://host:port`).
pub fn connect_lazy(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Marks a call as open-ended (a stream that lives as long as its client, e.g. a live quote
/// stream behind an SSE connection): no default deadline is added. A deadline propagated from
/// an incoming call still applies. Insert it into the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct OpenEnded;

/// Injects `traceparent`, the propagated deadline and the identity token into each outgoing
/// call.
#[derive(Clone, Debug)]
pub struct OutgoingContext {
    default_timeout: Duration,
    signer: Arc<Signer>,
    /// The upstream's service name, the tokens' `aud`.
    audience: Arc<str>,
}

impl OutgoingContext {
    pub fn new(default_timeout: Duration, signer: Arc<Signer>, audience: &str) -> Self {
        Self {
            default_timeout,
            signer,
            audience: audience.into(),
        }
    }
}

impl Interceptor for OutgoingContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        });
        let user = request.extensions().get::<OnBehalfOf>().map(|on| &on.0);
        let token = self.signer.token(&self.audience, user);
        request.metadata_mut().insert(
            IDENTITY_HEADER,
            MetadataValue::try_from(token).expect("a JWT is ASCII"),
        );
        if let Some(value) = self
            .signer
            .request_id()
            .and_then(|id| MetadataValue::try_from(id).ok())
        {
            request.metadata_mut().insert(REQUEST_ID_HEADER, value);
        }
        let open_ended = request.extensions().get::<OpenEnded>().is_some();
        let timeout = match deadline::remaining() {
            Some(left) if open_ended => left,
            Some(left) => left.min(self.default_timeout),
            None if open_ended => return Ok(request),
            None => self.default_timeout,
        };
        if timeout.is_zero() {
            return Err(tonic::Status::deadline_exceeded(
                "the caller's deadline passed before this call was made",
            ));
        }
        request.set_timeout(timeout);
        request.metadata_mut().insert(
            deadline::DEADLINE_HEADER,
            MetadataValue::try_from(deadline::absolute(timeout)).expect("ASCII digits"),
        );
        Ok(request)
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_or_say_what_is_expected() {
        assert_eq!(
            "http://a:1, http://b:2".parse(),
            Ok(Target::Static(vec![
                "http://a:1".into(),
                "http://b:2".into()
            ]))
        );
        assert_eq!(
            "dns:///user-grpc.mirai.svc.cluster.local:50051".parse(),
            Ok(Target::Dns {
                host: "user-grpc.mirai.svc.cluster.local".into(),
                port: 50051
            })
        );
        for bad in [
            "",
            "a:1",
            "dns:///nohost",
            "dns:///h:port",
            "http://a:1,b:2",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_dns_target_is_resolved_and_called() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_, health) = tonic_health::server::health_reporter();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let target = format!("dns:///127.0.0.1:{port}").parse().unwrap();
        let client = Client::build(
            "test",
            &ClientConfig::new(target, Duration::from_secs(2)),
            &Metrics::new(),
            &crate::grpc::Identity::for_tests("mirai-test").signer,
        );
        let response = tonic_health::pb::health_client::HealthClient::new(client.channel())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("the resolved endpoint answers");
        assert_eq!(response.into_inner().status, 1, "SERVING");
        let status = client.endpoints().status();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].endpoint, format!("http://127.0.0.1:{port}"));
        assert_eq!(status[0].circuit, "closed");
    }

    /// A stand-in for a service with a write method: counts the calls it answers.
    #[derive(Clone)]
    struct Writes(Arc<std::sync::atomic::AtomicU32>);

    impl tonic::server::NamedService for Writes {
        const NAME: &'static str = "mirai.user.v1.UserService";
    }

    impl tower::Service<http::Request<Body>> for Writes {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            let calls = Arc::clone(&self.0);
            Box::pin(async move {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut grpc =
                    tonic::server::Grpc::new(tonic_prost::ProstCodec::<(), ()>::default());
                Ok(grpc
                    .unary(
                        tower::service_fn(|_: tonic::Request<()>| async {
                            Ok::<_, tonic::Status>(tonic::Response::new(()))
                        }),
                        request,
                    )
                    .await)
            })
        }
    }

    #[tokio::test]
    async fn a_write_refused_at_connect_is_sent_to_the_other_replica_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap().port();
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Writes(Arc::clone(&calls)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        // A replica that is gone: nothing listens on its port.
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let target = Target::Static(vec![
            format!("http://127.0.0.1:{dead}"),
            format!("http://127.0.0.1:{live}"),
        ]);
        let client = Client::build(
            "user",
            &ClientConfig::new(target, Duration::from_secs(2)),
            &Metrics::new(),
            &crate::grpc::Identity::for_tests("mirai-test").signer,
        );
        // Register is neither NO_SIDE_EFFECTS nor IDEMPOTENT: only a call that never left this
        // process may be sent again.
        assert!(
            !mirai_proto::methods::lookup("/mirai.user.v1.UserService/Register")
                .unwrap()
                .retryable()
        );
        for _ in 0..20 {
            let mut grpc = tonic::client::Grpc::new(client.channel());
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(()),
                http::uri::PathAndQuery::from_static("/mirai.user.v1.UserService/Register"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .expect("sent to the live replica");
        }
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            20,
            "each write reached the live replica exactly once"
        );
    }

    #[tokio::test]
    async fn only_a_refused_connection_counts_as_never_sent() {
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{dead}"))
            .unwrap()
            .connect_lazy();
        let request = http::Request::builder()
            .uri(format!(
                "http://127.0.0.1:{dead}/mirai.user.v1.UserService/Register"
            ))
            .body(Body::empty())
            .unwrap();
        let error = tower::ServiceExt::oneshot(channel, request)
            .await
            .expect_err("nothing listens");
        let status = upstream_status("user", "http://dead", error.into());
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(never_sent(&status), "{status:?}");

        let reset = upstream_status(
            "user",
            "http://live",
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        );
        assert!(!never_sent(&reset), "a reset call may have been acted on");
    }

    /// Every outgoing call carries its deadline twice: relative (`grpc-timeout`, what gRPC
    /// servers honour) and absolute (what lets ours refuse a call read after it expired).
    #[tokio::test]
    async fn outgoing_calls_carry_the_deadline_as_an_absolute_time_too() {
        let signer = crate::grpc::Identity::for_tests("client-test").signer;
        let mut context = OutgoingContext::new(Duration::from_secs(2), signer, "upstream");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        };
        let absolute = |request: &tonic::Request<()>| -> u128 {
            let value = request.metadata().get(deadline::DEADLINE_HEADER);
            value
                .expect("the header")
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        };
        let before = now();
        let request = context.call(tonic::Request::new(())).unwrap();
        assert!(
            (before + 1_900..=now() + 2_000).contains(&absolute(&request)),
            "the default timeout from now"
        );
        // Inside a call with 300 ms left, that is what goes downstream.
        let inner = tokio::time::Instant::now() + Duration::from_millis(300);
        let request = deadline::scope(Some(inner), async {
            context.call(tonic::Request::new(())).unwrap()
        })
        .await;
        let sent = absolute(&request);
        assert!(sent <= now() + 300 && sent + 100 > now() + 300, "{sent}");
    }
}
