//! Outgoing gRPC channels.
//!
//! Every generated client is built as `FooClient::with_interceptor(channel, OutgoingContext::new(t))`
//! so each call carries the current span's `traceparent` and a `grpc-timeout` no longer than the
//! incoming call's remaining deadline (or the default timeout when there is none).

use std::time::Duration;

use opentelemetry::propagation::Injector;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::deadline;

/// A channel whose calls carry trace context and deadlines.
pub type TracedChannel = InterceptedService<Channel, OutgoingContext>;

/// A lazily connecting channel to `url` (`http://host:port`). Connection problems surface as
/// `UNAVAILABLE` on the first call, never at startup, so services start in any order.
pub fn connect_lazy(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A lazily connecting channel wrapped with [`OutgoingContext`].
pub fn traced(
    url: &str,
    default_timeout: Duration,
) -> Result<TracedChannel, tonic::transport::Error> {
    Ok(InterceptedService::new(
        connect_lazy(url)?,
        OutgoingContext::new(default_timeout),
    ))
}

/// Marks a call as open-ended (a stream that lives as long as its client, e.g. a live quote
/// stream behind an SSE connection): no default deadline is added. A deadline propagated from
/// an incoming call still applies. Insert it into the request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct OpenEnded;

/// Injects `traceparent` and the propagated deadline into each outgoing call.
#[derive(Clone, Copy, Debug)]
pub struct OutgoingContext {
    default_timeout: Duration,
}

impl OutgoingContext {
    pub fn new(default_timeout: Duration) -> Self {
        Self { default_timeout }
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
