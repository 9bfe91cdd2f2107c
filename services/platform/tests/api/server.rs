use std::time::Duration;

use mirai_platform::testing::{http_status, wait_for_status};
use tokio_util::sync::CancellationToken;

use crate::helpers::{call_sleep, slow_app};

#[tokio::test]
async fn shutdown_lets_an_in_flight_call_finish() {
    let (app, _db) = slow_app(Duration::from_millis(1500)).await;
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    wait_for_status(
        &format!("http://{admin}/readyz"),
        200,
        Duration::from_secs(10),
    )
    .await;

    let call = tokio::spawn(call_sleep(grpc, None, &[]));
    tokio::time::sleep(Duration::from_millis(300)).await; // the call is now in flight
    stop.cancel();

    // Readiness turns off at once, before the in-flight call completes.
    assert_eq!(
        http_status(&format!("http://{admin}/readyz")).await,
        Some(503)
    );
    assert!(!call.is_finished());
    call.await
        .unwrap()
        .expect("the in-flight call completes successfully");
    server.await.unwrap().expect("clean stop");
    // After the drain the listener is closed.
    assert!(call_sleep(grpc, None, &[]).await.is_err());
}

#[tokio::test]
async fn deadlines_reach_the_handler_and_are_enforced() {
    let (app, _db) = slow_app(Duration::from_millis(200)).await;
    let grpc = app.grpc_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let seen = call_sleep(grpc, Some(Duration::from_secs(3)), &[])
        .await
        .unwrap();
    assert!((2000..=3000).contains(&seen), "handler saw {seen} ms left");
    // Past the deadline the call is cut off (tonic reports an expired timeout as CANCELLED).
    let err = call_sleep(grpc, Some(Duration::from_millis(50)), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        "{err:?}"
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}

/// A call read after its caller gave up — it waited in the socket of a stopped or swamped
/// server — is answered DEADLINE_EXCEEDED without running; one read late but in time gets only
/// what is left of the caller's deadline, not a fresh `grpc-timeout`.
#[tokio::test]
async fn a_call_read_after_its_callers_deadline_does_not_run() {
    use mirai_platform::grpc::deadline::{CLOCK_SKEW_ALLOWANCE, DEADLINE_HEADER};
    let (app, _db) = slow_app(Duration::from_millis(10)).await;
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let unix_millis = |offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        (now.as_millis() as i64 + offset).to_string()
    };

    // Sent 20 s ago with a 5 s budget: grpc-timeout alone would give it 5 s more.
    let stale = unix_millis(-15_000);
    let err = call_sleep(
        grpc,
        Some(Duration::from_secs(5)),
        &[(DEADLINE_HEADER, &stale)],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("it was not run"), "{err:?}");
    let metrics = mirai_platform::testing::metrics_text(admin).await;
    assert!(
        metrics.contains(r#"mirai_grpc_server_handled_total{grpc_service="test.Slow",grpc_method="Sleep",grpc_code="DeadlineExceeded"} 1"#),
        "{metrics}"
    );

    // Read with 1 s of its caller's 5 s left: the handler sees about 1 s (plus the allowance).
    let late = unix_millis(1_000);
    let seen = call_sleep(
        grpc,
        Some(Duration::from_secs(5)),
        &[(DEADLINE_HEADER, &late)],
    )
    .await
    .unwrap();
    let ceiling = 1_000 + CLOCK_SKEW_ALLOWANCE.as_millis() as u64;
    assert!(
        (500..=ceiling).contains(&seen),
        "handler saw {seen} ms left"
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_trace_id_appears_in_the_server_span_and_metrics_count_calls() {
    let (exporter, _guard) = mirai_platform::testing::capture_spans("trace-test");

    let (app, _db) = slow_app(Duration::from_millis(10)).await;
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    call_sleep(grpc, None, &[("traceparent", &traceparent)])
        .await
        .unwrap();

    let spans = exporter.get_finished_spans().unwrap();
    let server_span = spans
        .iter()
        .find(|s| s.name == "test.Slow/Sleep")
        .unwrap_or_else(|| {
            panic!(
                "no server span among {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    assert_eq!(server_span.span_context.trace_id().to_string(), trace_id);
    assert_eq!(server_span.parent_span_id.to_string(), "00f067aa0ba902b7");

    let metrics = mirai_platform::testing::metrics_text(admin).await;
    assert!(
        metrics.contains(r#"mirai_grpc_server_handled_total{grpc_service="test.Slow",grpc_method="Sleep",grpc_code="Ok"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("mirai_grpc_server_handling_seconds_bucket"),
        "{metrics}"
    );

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn outgoing_calls_carry_the_callers_trace_and_deadline() {
    use tracing::Instrument as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    let (exporter, _guard) = mirai_platform::testing::capture_spans("client-test");
    let (app, _db) = slow_app(Duration::from_millis(10)).await;
    let grpc = app.grpc_addr();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let channel = mirai_platform::grpc::client::Client::build(
        "platform-test",
        &mirai_platform::grpc::client::ClientConfig::for_url(
            &format!("http://{grpc}"),
            Duration::from_secs(2),
        ),
        &mirai_platform::telemetry::Metrics::new(),
        &mirai_platform::grpc::Identity::for_tests("mirai-platform-test").signer,
    )
    .channel();
    let span = tracing::info_span!("caller");
    let caller_trace = {
        use opentelemetry::trace::TraceContextExt as _;
        span.context().span().span_context().trace_id()
    };
    let seen_ms = async {
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.unwrap();
        client
            .unary(
                tonic::Request::new(()),
                http::uri::PathAndQuery::from_static(crate::helpers::SLEEP_PATH),
                tonic_prost::ProstCodec::<(), u64>::default(),
            )
            .await
            .unwrap()
            .into_inner()
    }
    .instrument(span)
    .await;
    assert!(
        (1000..=2000).contains(&seen_ms),
        "the default client timeout reached the server: {seen_ms} ms"
    );

    let spans = exporter.get_finished_spans().unwrap();
    let server_span = spans
        .iter()
        .find(|s| s.name == "test.Slow/Sleep")
        .expect("server span");
    assert_eq!(server_span.span_context.trace_id(), caller_trace);
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// The grace period bounds the whole stop, not only the server's drain: a background task
/// that ignores the signal is abandoned when it runs out, and the stop still succeeds.
#[tokio::test]
async fn a_task_that_ignores_the_signal_is_abandoned_after_the_grace_period() {
    let grace = Duration::from_millis(800);
    let (mut app, _db) = crate::helpers::slow_app_with(Duration::ZERO, |config| {
        config.shutdown.grace = grace;
    })
    .await;
    app.background("stubborn", |_stop| Box::pin(std::future::pending::<()>()));
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let stopped = tokio::time::timeout(grace * 5, server)
        .await
        .expect("the stop ends soon after the grace period");
    stopped.unwrap().expect("clean stop");
}
