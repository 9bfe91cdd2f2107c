//! Per-call observability for the gRPC server: trace context, deadline, RED metrics.

use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use opentelemetry_http::HeaderExtractor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::deadline;
use crate::telemetry::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

/// RED metrics of the gRPC server, registered once per application.
#[derive(Clone)]
pub struct RpcMetrics {
    handled: Family<CallLabels, Counter>,
    duration: Family<MethodLabels, Histogram>,
    in_flight: Gauge,
}

impl RpcMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        Self {
            handled: metrics.register(
                "grpc_server_handled",
                "gRPC calls completed, by service, method and status code.",
                Family::default(),
            ),
            duration: metrics.register(
                "grpc_server_handling_seconds",
                "gRPC call latency until the response headers, by service and method.",
                Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
                }),
            ),
            in_flight: metrics.register(
                "grpc_server_in_flight",
                "gRPC calls currently being handled.",
                Gauge::default(),
            ),
        }
    }
}

/// Wraps every call: continues the caller's trace (`traceparent`), runs the handler inside the
/// call's deadline scope, and records RED metrics.
#[derive(Clone)]
pub struct ServerLayer {
    metrics: RpcMetrics,
}

impl ServerLayer {
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct ServerService<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// Health probes and reflection are too chatty to trace.
fn is_infrastructure(service: &str) -> bool {
    service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.")
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ServerService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // The clone is ready only if polled; swap so the ready instance handles this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();

        let (service, method) = super::split_path(req.uri().path());
        let (service, method) = (service.to_owned(), method.to_owned());
        let deadline = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(deadline::parse_grpc_timeout)
            .map(|timeout| tokio::time::Instant::now() + timeout);

        let span = if is_infrastructure(&service) {
            tracing::Span::none()
        } else {
            let span = tracing::info_span!(
                "grpc.server",
                otel.name = %format!("{service}/{method}"),
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
            );
            let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
                propagator.extract(&HeaderExtractor(req.headers()))
            });
            // A missing or invalid `traceparent` simply starts a new trace.
            let _ = span.set_parent(parent);
            crate::telemetry::record_ids(&span);
            span
        };

        Box::pin(
            async move {
                let started = Instant::now();
                metrics.in_flight.inc();
                let result = deadline::scope(deadline, inner.call(req)).await;
                metrics.in_flight.dec();
                // Errors from handlers travel as "trailers-only" responses, so `grpc-status`
                // in the headers is the failure code; its absence means the call succeeded.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .unwrap_or(0),
                    Err(_) => tonic::Code::Unknown as i32,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code);
                metrics
                    .duration
                    .get_or_create(&MethodLabels {
                        grpc_service: service.clone(),
                        grpc_method: method.clone(),
                    })
                    .observe(started.elapsed().as_secs_f64());
                metrics
                    .handled
                    .get_or_create(&CallLabels {
                        grpc_service: service,
                        grpc_method: method,
                        grpc_code: format!("{:?}", tonic::Code::from_i32(code)),
                    })
                    .inc();
                result
            }
            .instrument(span),
        )
    }
}
