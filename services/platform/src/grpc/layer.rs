//! Per-call work of the gRPC server: trace context, deadline, RED metrics, load shedding, the
//! caller's signed identity and (when configured) fault injection.
//!
//! Order inside one call: span and deadline → RED metrics start → admission (shed at once when
//! `max_in_flight` calls are running) → internal identity (`UNAUTHENTICATED` without a valid
//! token, see [`super::identity`]) → the caller's deadline (`DEADLINE_EXCEEDED` without running
//! when it had passed before the call was read, see [`super::deadline`]) → injected fault, if
//! any → the handler. Shed calls, refused callers, expired calls and injected faults are
//! therefore counted in the RED metrics like any other answer.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use opentelemetry_http::HeaderExtractor;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::{Layer, Service};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::deadline;
use super::fault::{Faults, Injected, Injector};
use super::identity::{self, Verifier};
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
    shed: Family<MethodLabels, Counter>,
}

impl RpcMetrics {
    /// Registers `mirai_grpc_server_{handled_total, handling_seconds, in_flight, shed_total}`.
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
            shed: metrics.register(
                "grpc_server_shed",
                "gRPC calls refused with RESOURCE_EXHAUSTED because the in-flight limit was \
                 reached, by service and method.",
                Family::default(),
            ),
        }
    }
}

/// Wraps every call: continues the caller's trace (`traceparent`), runs the handler inside the
/// call's deadline scope, records RED metrics, sheds calls beyond the in-flight limit and
/// injects configured faults. Health checks and reflection are never shed nor faulted.
#[derive(Clone)]
pub struct ServerLayer {
    metrics: RpcMetrics,
    limit: Option<InFlightLimit>,
    faults: Option<Injector>,
    identity: Option<Arc<Verifier>>,
}

/// The in-flight bound of one process: a permit per running call, none waited for.
#[derive(Clone)]
struct InFlightLimit {
    permits: Arc<Semaphore>,
    /// The `RESOURCE_EXHAUSTED` message, made once.
    message: Arc<str>,
}

impl ServerLayer {
    /// A layer with tracing, deadlines and RED metrics only: no in-flight limit, no faults, no
    /// identity check (the [`super::GrpcServer`] always adds one).
    pub fn new(metrics: RpcMetrics) -> Self {
        Self {
            metrics,
            limit: None,
            faults: None,
            identity: None,
        }
    }

    /// Refuses every call but health and reflection without a token `verifier` accepts, and
    /// puts the verified [`identity::Caller`] into the request's extensions.
    pub fn with_identity(mut self, verifier: Arc<Verifier>) -> Self {
        self.identity = Some(verifier);
        self
    }

    /// Answers calls beyond `max` concurrent ones at once with `RESOURCE_EXHAUSTED` and the
    /// metadata `retry-after: 1` and `mirai-overloaded: 1`, instead of queueing them; `0` means
    /// no limit. `service_name` (`mirai-analytics`) goes into the message.
    pub fn with_max_in_flight(mut self, service_name: &str, max: usize) -> Self {
        self.limit = (max > 0).then(|| {
            let max = max.min(Semaphore::MAX_PERMITS);
            InFlightLimit {
                permits: Arc::new(Semaphore::new(max)),
                message: format!(
                    "{service_name} is overloaded ({max} calls in flight); retry later"
                )
                .into(),
            }
        });
        self
    }

    /// Injects the faults `faults` describes (see [`super::fault`]), counting them in
    /// `mirai_faults_injected_total{kind}`; hangs and delays end when `shutdown` fires.
    pub fn with_faults(
        mut self,
        faults: Faults,
        metrics: &Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        self.faults = Some(Injector::new(faults, metrics, shutdown));
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ServerLayer`] wraps around the routes.
#[derive(Clone)]
pub struct ServerService<S> {
    inner: S,
    layer: ServerLayer,
}

/// Health probes and reflection are too chatty to trace, and must keep answering under load
/// and under injected faults: they are never shed nor faulted.
pub(crate) fn is_infrastructure(service: &str) -> bool {
    service.starts_with("grpc.health.") || service.starts_with("grpc.reflection.")
}

/// Whether a call may run.
enum Admission {
    /// Runs; the permit (if there is a limit) is held until the call ends.
    Admitted(Option<OwnedSemaphorePermit>),
    /// Refused: the limit is reached.
    Shed,
}

impl ServerLayer {
    fn admit(&self, service: &str) -> Admission {
        match &self.limit {
            Some(limit) if !is_infrastructure(service) => {
                match limit.permits.clone().try_acquire_owned() {
                    Ok(permit) => Admission::Admitted(Some(permit)),
                    Err(_) => Admission::Shed,
                }
            }
            _ => Admission::Admitted(None),
        }
    }
}

/// The trailers-only `RESOURCE_EXHAUSTED` answer to a shed call. `mirai-overloaded` tells the
/// gateway this is server overload (HTTP 503 + `Retry-After`), not a quota (429).
fn overloaded<B: Default>(message: &str) -> http::Response<B> {
    let mut status = tonic::Status::resource_exhausted(message);
    let metadata = status.metadata_mut();
    metadata.insert(
        "retry-after",
        tonic::metadata::MetadataValue::from_static("1"),
    );
    metadata.insert(
        crate::grpc::client::OVERLOADED,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    status.into_http()
}

/// The RED bookkeeping of one call. Dropped before [`Call::finish`] (tonic gave up at the
/// deadline, or the client went away), it still leaves the in-flight gauge and counts the call
/// as `Cancelled`, which is what the client was told or would be.
struct Call {
    metrics: RpcMetrics,
    service: String,
    method: String,
    started: Instant,
    finished: bool,
}

impl Call {
    fn start(metrics: RpcMetrics, service: String, method: String) -> Self {
        metrics.in_flight.inc();
        Self {
            metrics,
            service,
            method,
            started: Instant::now(),
            finished: false,
        }
    }

    fn finish(mut self, code: i32) {
        tracing::Span::current().record("rpc.grpc.status_code", code);
        self.record(code);
    }

    fn record(&mut self, code: i32) {
        self.finished = true;
        self.metrics.in_flight.dec();
        self.metrics
            .duration
            .get_or_create(&MethodLabels {
                grpc_service: self.service.clone(),
                grpc_method: self.method.clone(),
            })
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .handled
            .get_or_create(&CallLabels {
                grpc_service: std::mem::take(&mut self.service),
                grpc_method: std::mem::take(&mut self.method),
                grpc_code: format!("{:?}", tonic::Code::from_i32(code)),
            })
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.finished {
            self.record(tonic::Code::Cancelled as i32);
        }
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ServerService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        // The clone is ready only if polled; swap so the ready instance handles this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.layer.metrics.clone();

        let (service, method) = super::split_path(req.uri().path());
        let (service, method) = (service.to_owned(), method.to_owned());
        let deadline = deadline::incoming(req.headers());
        let infrastructure = is_infrastructure(&service);
        // Decided here, not in the future, so a refusal costs no task time.
        let admission = self.layer.admit(&service);
        let injector = self
            .layer
            .faults
            .as_ref()
            .filter(|_| !infrastructure)
            .cloned();
        let shed_message = self.layer.limit.as_ref().map(|l| l.message.clone());
        // Verified before the handler sees the call; the caller goes into its extensions.
        let caller = match &self.layer.identity {
            Some(verifier) if !infrastructure => match verifier.verify_headers(req.headers()) {
                Ok(caller) => {
                    let request_id = caller.request_id.clone();
                    req.extensions_mut().insert(caller);
                    Ok(request_id)
                }
                Err(refusal) => Err(refusal),
            },
            _ => Ok(None),
        };

        let span = if infrastructure {
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
                let call = Call::start(metrics.clone(), service.clone(), method.clone());
                let result = match (admission, caller, deadline) {
                    (Admission::Shed, _, _) => {
                        metrics
                            .shed
                            .get_or_create(&MethodLabels {
                                grpc_service: service,
                                grpc_method: method,
                            })
                            .inc();
                        Ok(overloaded(shed_message.as_deref().unwrap_or_default()))
                    }
                    (Admission::Admitted(_), Err(refusal), _) => {
                        tracing::warn!(message = "Call refused: no valid internal identity.", %refusal);
                        Ok(tonic::Status::from(refusal).into_http())
                    }
                    (Admission::Admitted(_), Ok(_), Err(expired)) => {
                        tracing::warn!(
                            message = "Call refused: read after its caller's deadline.",
                            late_by_ms = expired.late_by.as_millis() as u64
                        );
                        Ok(expired.status().into_http())
                    }
                    (Admission::Admitted(permit), Ok(request_id), Ok(deadline)) => {
                        let result = deadline::scope(deadline, async {
                            if let Some(injector) = injector
                                && let Injected::Answer(status) =
                                    injector.inject(&service, &method, deadline).await
                            {
                                return Ok(status.into_http());
                            }
                            identity::with_incoming_request_id(request_id, inner.call(req)).await
                        })
                        .await;
                        drop(permit);
                        result
                    }
                };
                // Errors from handlers travel as "trailers-only" responses, so `grpc-status`
                // in the headers is the failure code; its absence means the call succeeded.
                let code = match &result {
                    Ok(response) => super::answered_code(response),
                    Err(_) => tonic::Code::Unknown as i32,
                };
                call.finish(code);
                result
            }
            .instrument(span),
        )
    }
}
