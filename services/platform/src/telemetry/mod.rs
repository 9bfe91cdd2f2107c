//! Logs, traces and metrics.
//!
//! [`init`] installs one `tracing` subscriber for the process: JSON (or pretty) logs on stdout
//! that carry the OpenTelemetry `trace_id`/`span_id` of the current span, and an OpenTelemetry
//! layer whose spans are exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Trace ids
//! exist even without an exporter, so logs always correlate and `traceparent` always propagates.
//! The returned [`Guard`] flushes pending spans when dropped.
//!
//! Database statements become spans and `mirai_db_query_duration_seconds` through
//! [`QueryLayer`], which reads sqlx's own statement events (no wrapper around the pool).
//!
//! Metrics live in a per-application [`Metrics`] registry (not a process global), so several
//! services can run in one test process without sharing counters. The one exception is the
//! query histogram ([`QueryMetrics::process`]): `tracing` layers are per process.

mod cache;
mod json;
mod metrics;
mod queries;

pub use cache::{CacheCounter, CacheMetrics};
pub use metrics::Metrics;
pub use queries::{QueryFilter, QueryLayer, QueryMetrics, SQLX_QUERY_TARGET, operation_of};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter, TracerProviderBuilder};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetryConfig};

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `RUST_LOG` holds directives `tracing` cannot parse.
    #[error("RUST_LOG is invalid: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The OTLP exporter could not be built from `OTEL_EXPORTER_OTLP_*`.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// A global subscriber was already installed in this process.
    #[error("telemetry already initialised: {0}")]
    AlreadyInitialised(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the tracer provider alive; flushes and shuts it down on drop.
#[must_use = "dropping the guard flushes and stops tracing"]
pub struct Guard {
    provider: SdkTracerProvider,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            // The subscriber may already be gone; stderr is the last resort.
            eprintln!("telemetry: flushing spans failed: {error}");
        }
    }
}

/// Installs logging and tracing for this process.
pub fn init(config: &TelemetryConfig) -> Result<Guard, TelemetryError> {
    install(config, |builder| builder)
}

/// Like [`init`], plus an extra exporter that receives every finished span synchronously
/// (tests use an in-memory exporter to assert on spans).
pub fn init_with_exporter<E>(config: &TelemetryConfig, exporter: E) -> Result<Guard, TelemetryError>
where
    E: SpanExporter + 'static,
{
    install(config, |builder| builder.with_simple_exporter(exporter))
}

fn install(
    config: &TelemetryConfig,
    customise: impl FnOnce(TracerProviderBuilder) -> TracerProviderBuilder,
) -> Result<Guard, TelemetryError> {
    // One filter per layer: `RUST_LOG` decides what is logged and traced, while the query
    // layer always sees sqlx's statement events (see `queries`).
    let filter = || EnvFilter::builder().parse(&config.log_filter);

    let mut builder = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(config.service_name.clone())
            .build(),
    );
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = customise(builder).build();
    let tracer = provider.tracer(config.service_name.clone());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());

    let logs = match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(json::JsonFormat::new(&config.service_name))
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };

    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer.clone())
                .with_filter(filter()?),
        )
        .with(logs.with_filter(filter()?))
        .with(QueryLayer::new(tracer, QueryMetrics::process()).with_filter(QueryFilter))
        .try_init()?;

    Ok(Guard { provider })
}

/// Field names request spans declare (as `tracing::field::Empty`) for [`record_ids`].
pub const TRACE_ID_FIELD: &str = "trace_id";
pub const SPAN_ID_FIELD: &str = "span_id";

/// Records the span's OpenTelemetry trace and span ids into its `trace_id` and `span_id`
/// fields, so every log line inside it carries them. Call after `set_parent`.
pub fn record_ids(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record(TRACE_ID_FIELD, span_context.trace_id().to_string());
        span.record(SPAN_ID_FIELD, span_context.span_id().to_string());
    }
}

/// The W3C trace id of the current span, if any (for error bodies and logs).
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let context = tracing::Span::current().context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
