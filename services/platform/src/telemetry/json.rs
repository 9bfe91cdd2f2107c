//! One JSON object per log line, with the OpenTelemetry ids of the enclosing request span.
//!
//! A formatter runs inside the dispatcher, where the OpenTelemetry context of a span cannot be
//! looked up; so request-level spans record `trace_id`/`span_id` as ordinary fields when they
//! are created ([`super::record_ids`]) and the formatter reads the nearest ones.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// `{"timestamp","level","service","target","message",<fields>,"span":{..},"trace_id","span_id"}`
pub(crate) struct JsonFormat {
    service: String,
}

impl JsonFormat {
    pub(crate) fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("service".into(), self.service.clone().into());
        line.insert("target".into(), meta.target().into());
        event.record(&mut FieldVisitor(&mut line));

        if let Some(scope) = ctx.event_scope() {
            for (depth, span) in scope.enumerate() {
                let extensions = span.extensions();
                let fields = extensions
                    .get::<FormattedFields<N>>()
                    .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
                    .unwrap_or_default();
                if depth == 0 {
                    let mut span_obj = Map::new();
                    span_obj.insert("name".into(), span.name().into());
                    span_obj.extend(fields.clone());
                    line.insert("span".into(), Value::Object(span_obj));
                }
                // Root spans (RPC, HTTP request, event handler) record their OpenTelemetry ids
                // as fields; the nearest one names the trace of this line.
                if let Some(trace_id) = fields.get(super::TRACE_ID_FIELD) {
                    line.insert("trace_id".into(), trace_id.clone());
                    if let Some(span_id) = fields.get(super::SPAN_ID_FIELD) {
                        line.insert("span_id".into(), span_id.clone());
                    }
                    break;
                }
            }
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}
