//! Database queries as spans and a latency histogram, from sqlx's own statement events.
//!
//! sqlx logs every statement it finishes as a `sqlx::query` event (by default at DEBUG) with
//! the SQL text, `rows_affected`, `rows_returned` and `elapsed_secs`, emitted in the task that
//! ran the query, inside the caller's current span. [`QueryLayer`] turns each such event into
//!
//! - an OpenTelemetry client span (`SELECT outbox`, ...) that starts `elapsed` before the
//!   event, child of the current span: only when that span belongs to a trace, so the outbox
//!   relay's polling does not start a trace of its own every second;
//! - an observation of `mirai_db_query_duration_seconds{operation}`.
//!
//! Nothing else has to change: every `sqlx::query*(..).fetch*(&pool)` in every service is
//! covered, transactions included (`BEGIN`/`COMMIT` count as operation `transaction`). The
//! span carries the statement text only: parameters are bound separately and never appear in
//! it. The event's own filter is independent of `RUST_LOG`, which keeps deciding whether the
//! statements also go to the logs.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TraceContextExt as _, Tracer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::Metrics;

/// The target sqlx logs finished statements under.
pub const SQLX_QUERY_TARGET: &str = "sqlx::query";

/// Longest statement text a span carries; longer ones are cut (on a character boundary).
const MAX_STATEMENT_CHARS: usize = 2_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    operation: &'static str,
}

type DurationFamily = Family<QueryLabels, Histogram, fn() -> Histogram>;

/// `mirai_db_query_duration_seconds{operation}`: how long statements take, from sending to the
/// last row read, by the kind of statement (see [`operation_of`]); never the SQL itself.
#[derive(Clone)]
pub struct QueryMetrics {
    duration: DurationFamily,
}

impl QueryMetrics {
    /// A fresh, unregistered family (tests give one to their own [`QueryLayer`]).
    pub fn new() -> Self {
        fn histogram() -> Histogram {
            // 0.25 ms .. ~8 s.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        }
        Self {
            duration: Family::new_with_constructor(histogram),
        }
    }

    /// The process's family, which [`super::init`]'s layer observes. A process is one service
    /// in production; several services started in one test process share it.
    pub fn process() -> Self {
        static PROCESS: OnceLock<QueryMetrics> = OnceLock::new();
        PROCESS.get_or_init(Self::new).clone()
    }

    /// Exposes this family in `metrics` (an application's `/metrics`).
    pub fn register(&self, metrics: &Metrics) {
        metrics.register(
            "db_query_duration_seconds",
            "Database statement latency from sending to the last row read, by operation \
             (select, insert, update, delete, with, transaction, other).",
            self.duration.clone(),
        );
    }

    fn observe(&self, operation: &'static str, elapsed: Duration) {
        self.duration
            .get_or_create(&QueryLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}

impl Default for QueryMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The low-cardinality kind of a statement, from its first keyword.
pub fn operation_of(sql: &str) -> &'static str {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    match first.to_ascii_lowercase().as_str() {
        "select" => "select",
        "insert" => "insert",
        "update" => "update",
        "delete" => "delete",
        "with" => "with",
        "begin" | "start" | "commit" | "end" | "rollback" | "savepoint" | "release" => {
            "transaction"
        }
        _ => "other",
    }
}

/// The table a statement works on, when simple to see: the word after the first `FROM`,
/// `INTO` or `UPDATE`. Used in span names only (`SELECT outbox`).
fn target_of(sql: &str) -> Option<&str> {
    let mut words = sql.split_whitespace();
    while let Some(word) = words.next() {
        if ["from", "into", "update"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
        {
            let name = words.next()?;
            let name = name
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .find(|part| !part.is_empty())?;
            return Some(name);
        }
    }
    None
}

/// What one `sqlx::query` event says.
#[derive(Default)]
struct Statement {
    summary: String,
    full: String,
    rows_affected: u64,
    rows_returned: u64,
    elapsed_secs: f64,
}

impl Statement {
    /// sqlx puts a short statement (four words or fewer) in `summary` and leaves
    /// `db.statement` empty; a longer one is in `db.statement`, padded with newlines.
    fn sql(&self) -> &str {
        let full = self.full.trim();
        if full.is_empty() {
            self.summary.trim()
        } else {
            full
        }
    }
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.full),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = value;
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// A `tracing` layer that turns sqlx's statement events into spans and metrics (see the
/// module documentation). Install it with [`QueryFilter`] as its per-layer filter, beside the
/// OpenTelemetry layer whose tracer it is given.
pub struct QueryLayer<T> {
    tracer: T,
    metrics: QueryMetrics,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl<T> QueryLayer<T> {
    /// Spans are started with `tracer` (the OpenTelemetry layer's), durations go to `metrics`.
    pub fn new(tracer: T, metrics: QueryMetrics) -> Self {
        Self {
            tracer,
            metrics,
            dispatch: OnceLock::new(),
        }
    }
}

/// The per-layer filter [`QueryLayer`] needs, whatever `RUST_LOG` says: sqlx's statement
/// events at any level, and spans at INFO and above (to find the caller's trace: request,
/// RPC and handler spans are INFO). Libraries' DEBUG and TRACE spans (h2, hyper, per poll) stay
/// disabled, so the registry does not build them for this layer alone; a statement inside one
/// becomes a child of its nearest INFO ancestor.
#[derive(Clone, Copy, Debug)]
pub struct QueryFilter;

impl QueryFilter {
    fn wanted(metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater: this is INFO, WARN and ERROR.
        (metadata.is_span() && *metadata.level() <= tracing::Level::INFO)
            || metadata.target() == SQLX_QUERY_TARGET
    }
}

impl<S> Filter<S> for QueryFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::wanted(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::wanted(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

impl<S, T> Layer<S> for QueryLayer<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: Tracer + Send + Sync + 'static,
    T::Span: Send + Sync + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != SQLX_QUERY_TARGET {
            return;
        }
        let mut statement = Statement::default();
        event.record(&mut statement);
        let sql = statement.sql();
        let operation = operation_of(sql);
        let elapsed = Duration::try_from_secs_f64(statement.elapsed_secs).unwrap_or_default();
        self.metrics.observe(operation, elapsed);

        // The nearest enclosing span the OpenTelemetry layer knows, if it is part of a trace.
        let Some(dispatch) = self.dispatch.get().and_then(|weak| weak.upgrade()) else {
            return;
        };
        let Some(parent) = ctx
            .event_scope(event)
            .into_iter()
            .flatten()
            .find_map(|span| {
                tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)
                    .filter(|cx| cx.span().span_context().is_valid())
            })
        else {
            return;
        };

        let end = SystemTime::now();
        let start = end.checked_sub(elapsed).unwrap_or(end);
        let verb = operation.to_ascii_uppercase();
        let name = match target_of(sql) {
            Some(target) if operation != "transaction" => format!("{verb} {target}"),
            _ => verb,
        };
        let mut attributes = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", operation),
            KeyValue::new(
                "db.query.text",
                truncate(sql, MAX_STATEMENT_CHARS).to_owned(),
            ),
            KeyValue::new(
                "db.response.returned_rows",
                i64::try_from(statement.rows_returned).unwrap_or(i64::MAX),
            ),
            KeyValue::new(
                "db.response.rows_affected",
                i64::try_from(statement.rows_affected).unwrap_or(i64::MAX),
            ),
        ];
        if let Some(target) = target_of(sql) {
            attributes.push(KeyValue::new("db.collection.name", target.to_owned()));
        }
        let mut span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        opentelemetry::trace::Span::end_with_timestamp(&mut span, end);
    }
}

fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_a_small_fixed_set() {
        assert_eq!(operation_of("SELECT 1"), "select");
        assert_eq!(
            operation_of("\n  insert into outbox (id) values ($1)"),
            "insert"
        );
        assert_eq!(operation_of("UPDATE users SET x = $1"), "update");
        assert_eq!(operation_of("DELETE FROM inbox"), "delete");
        assert_eq!(
            operation_of("WITH due AS (SELECT 1) SELECT * FROM due"),
            "with"
        );
        assert_eq!(operation_of("(SELECT 1) UNION (SELECT 2)"), "select");
        assert_eq!(operation_of("BEGIN"), "transaction");
        assert_eq!(operation_of("COMMIT"), "transaction");
        assert_eq!(operation_of("SAVEPOINT _sqlx_savepoint_1"), "transaction");
        assert_eq!(operation_of("SELECT pg_advisory_lock($1)"), "select");
        assert_eq!(operation_of("CREATE TABLE x ()"), "other");
        assert_eq!(operation_of(""), "other");
    }

    #[test]
    fn span_targets_are_the_table_after_from_into_or_update() {
        assert_eq!(target_of("SELECT id FROM outbox WHERE x"), Some("outbox"));
        assert_eq!(
            target_of("insert into inbox(id) values ($1)"),
            Some("inbox")
        );
        assert_eq!(target_of("UPDATE public.users SET"), Some("public.users"));
        assert_eq!(target_of("SELECT 1"), None);
    }

    use opentelemetry::trace::{SpanId, TracerProvider as _};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tracing::Instrument as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use crate::testing::TestDatabase;

    fn attribute(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    // A current-thread runtime: the subscriber set for this thread sees every poll.
    #[tokio::test(flavor = "current_thread")]
    async fn statements_in_a_trace_become_child_spans_and_every_statement_is_timed() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("queries-test");
        let metrics = QueryMetrics::new();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer.clone())
                    .with_filter(tracing_subscriber::EnvFilter::new("info")),
            )
            .with(QueryLayer::new(tracer, metrics.clone()).with_filter(QueryFilter));
        let _default = tracing::subscriber::set_default(subscriber);

        let db = TestDatabase::create("query_spans").await;
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let before = exporter.get_finished_spans().unwrap().len();

        async {
            sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2), ($3, $4)")
                .bind(1_i64)
                .bind("a secret note")
                .bind(2_i64)
                .bind("another")
                .execute(&pool)
                .await
                .unwrap();
            // Inside a DEBUG span no layer traces: the statement's parent is the handler.
            let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM notes WHERE body <> $1")
                .bind("nothing")
                .fetch_all(&pool)
                .instrument(tracing::debug_span!("poll"))
                .await
                .unwrap();
            assert_eq!(rows.len(), 2);
        }
        .instrument(tracing::info_span!("handler"))
        .await;
        // Outside any span: timed, but no trace of its own.
        sqlx::query("DELETE FROM notes")
            .execute(&pool)
            .await
            .unwrap();

        let spans = exporter.get_finished_spans().unwrap();
        let handler = spans
            .iter()
            .find(|s| s.name == "handler")
            .expect("handler span");
        let queries: Vec<&SpanData> = spans[before..]
            .iter()
            .filter(|s| attribute(s, "db.system.name").as_deref() == Some("postgresql"))
            .collect();
        let names: Vec<&str> = queries.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["INSERT notes", "SELECT notes"]);
        for query in &queries {
            assert_eq!(query.span_kind, SpanKind::Client);
            assert_eq!(query.parent_span_id, handler.span_context.span_id());
            assert_ne!(query.parent_span_id, SpanId::INVALID);
            assert_eq!(
                query.span_context.trace_id(),
                handler.span_context.trace_id()
            );
            assert!(query.start_time <= query.end_time);
        }
        let insert = queries[0];
        assert_eq!(
            attribute(insert, "db.query.text").as_deref(),
            Some("INSERT INTO notes (id, body) VALUES ($1, $2), ($3, $4)")
        );
        assert_eq!(
            attribute(insert, "db.response.rows_affected").as_deref(),
            Some("2")
        );
        assert_eq!(
            attribute(insert, "db.operation.name").as_deref(),
            Some("insert")
        );
        let select = queries[1];
        assert_eq!(
            attribute(select, "db.response.returned_rows").as_deref(),
            Some("2")
        );
        assert!(
            spans
                .iter()
                .flat_map(|s| s.attributes.iter())
                .all(|kv| !kv.value.to_string().contains("secret")),
            "no parameter value in any span"
        );

        let registry = Metrics::new();
        metrics.register(&registry);
        let text = registry.encode();
        for operation in ["insert", "select", "delete"] {
            let count =
                format!("mirai_db_query_duration_seconds_count{{operation=\"{operation}\"}} ");
            assert!(text.contains(&count), "{count} in {text}");
        }
        pool.close().await;
    }

    #[test]
    fn long_statements_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
