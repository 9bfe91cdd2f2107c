//! One trace from a public request to the statements it runs: the gateway's HTTP span, its
//! gRPC client span of the call, the service's gRPC server span under that, and the service's
//! database spans under that (through the handler's own span: `register` → `INSERT users`).

use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind};
use opentelemetry_sdk::trace::SpanData;
use serde_json::json;

use crate::helpers::{Gateway, PASSWORD};

const TRACE_ID: &str = "5b8efff798038103d269b633813fc60c";
const CALLER_SPAN: &str = "eee19b7ec3c1b174";

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// `span` and its ancestors among `spans`, nearest first.
fn lineage<'a>(spans: &'a [SpanData], span: &'a SpanData) -> Vec<&'a SpanData> {
    let mut chain = vec![span];
    let mut parent = span.parent_span_id;
    while parent != SpanId::INVALID {
        let Some(next) = spans.iter().find(|s| s.span_context.span_id() == parent) else {
            break;
        };
        chain.push(next);
        parent = next.parent_span_id;
    }
    chain
}

#[tokio::test]
async fn a_request_is_one_trace_from_the_gateway_through_the_service_into_its_queries() {
    let (exporter, _telemetry) = mirai_platform::testing::capture_spans("trace-test");
    let gateway = Gateway::start().await;

    let response = gateway
        .http
        .post(gateway.url("/v1/auth/register"))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({ "email": "traced@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The gateway's span ends just after the response is sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let spans = loop {
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id().to_string() == TRACE_ID)
            .collect();
        if spans.iter().any(|s| s.name == "POST /v1/auth/register")
            || tokio::time::Instant::now() > deadline
        {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();

    let http = spans
        .iter()
        .find(|s| s.name == "POST /v1/auth/register")
        .unwrap_or_else(|| panic!("no gateway span in {names:?}"));
    assert_eq!(http.span_kind, SpanKind::Server);
    assert_eq!(http.parent_span_id.to_string(), CALLER_SPAN);

    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server && s.name.starts_with("mirai.user."))
        .unwrap_or_else(|| panic!("no user service span in {names:?}"));
    // The call's parent is the gateway's client span of the call, under its request span.
    let client = spans
        .iter()
        .find(|s| s.span_context.span_id() == server.parent_span_id)
        .unwrap_or_else(|| panic!("the gRPC server span's parent is not in {names:?}"));
    assert_eq!(client.span_kind, SpanKind::Client, "{}", client.name);
    assert_eq!(client.name, server.name);
    assert_eq!(client.parent_span_id, http.span_context.span_id());
    assert_eq!(attribute(client, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(attribute(client, "peer.service").as_deref(), Some("user"));
    assert_eq!(
        attribute(client, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert!(client.start_time <= server.start_time);

    let queries: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attribute(s, "db.system.name").as_deref() == Some("postgresql"))
        .collect();
    assert!(!queries.is_empty(), "no database spans in {names:?}");
    for query in &queries {
        assert_eq!(query.span_kind, SpanKind::Client);
        assert!(
            lineage(&spans, query)
                .iter()
                .any(|s| s.span_context.span_id() == server.span_context.span_id()),
            "{} descends from the gRPC server span",
            query.name
        );
        assert!(query.start_time <= query.end_time);
    }
    // The insert of the account: its statement, never its values.
    let insert = queries
        .iter()
        .find(|s| s.name == "INSERT users")
        .unwrap_or_else(|| panic!("no `INSERT users` span in {names:?}"));
    let text = attribute(insert, "db.query.text").unwrap();
    assert!(text.contains("INSERT INTO users"), "{text}");
    assert!(!text.contains("traced@example.com"), "{text}");
    assert_eq!(
        attribute(insert, "db.response.rows_affected").as_deref(),
        Some("1")
    );

    gateway.stop().await;
}
