//! Load shedding and fault injection in the gRPC server layer, over real sockets.

use std::time::Duration;

use mirai_platform::config::{Profile, ServiceConfig};
use mirai_platform::grpc::{FaultRules, GrpcServer, ServeError};
use mirai_platform::telemetry::Metrics;
use mirai_platform::testing::{eventually, grpc_health, metrics_text};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{call, slow_app_with};

fn rules(text: &str) -> FaultRules {
    text.parse().unwrap()
}

fn metadata<'a>(status: &'a tonic::Status, key: &str) -> Option<&'a str> {
    status.metadata().get(key).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_are_shed_while_health_still_answers() {
    let (app, _db) = slow_app_with(Duration::from_millis(10), |config| {
        config.max_in_flight = 2;
        config.fault_injection = Some(rules("test.Slow/Hold=hang()"));
    })
    .await;
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(call(grpc, "Hold", None)))
        .collect();
    eventually(
        "two held calls in flight",
        Duration::from_secs(10),
        || async {
            metrics_text(admin)
                .await
                .contains("mirai_grpc_server_in_flight 2\n")
                .then_some(())
        },
    )
    .await;

    let shed = call(grpc, "Sleep", None).await.unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert_eq!(
        shed.message(),
        "mirai-platform-test is overloaded (2 calls in flight); retry later"
    );
    assert_eq!(metadata(&shed, "mirai-overloaded"), Some("1"), "{shed:?}");
    assert_eq!(metadata(&shed, "retry-after"), Some("1"), "{shed:?}");
    // Health checks are never shed.
    assert_eq!(grpc_health(grpc).await, Some(ServingStatus::Serving));

    let metrics = metrics_text(admin).await;
    for line in [
        r#"mirai_grpc_server_shed_total{grpc_service="test.Slow",grpc_method="Sleep"} 1"#,
        r#"mirai_grpc_server_handled_total{grpc_service="test.Slow",grpc_method="Sleep",grpc_code="ResourceExhausted"} 1"#,
        r#"mirai_faults_injected_total{kind="hang"} 2"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }

    // Shutdown ends the hangs, so the drain finishes with their (injected) answers rather than
    // waiting out the grace period and dropping the connections.
    stop.cancel();
    for call in held {
        // Generous: a hang that ignored shutdown would block this test forever instead.
        let status = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("the held call ends when the server shuts down")
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("injected fault: hang on test.Slow/Hold"),
            "{status:?}"
        );
    }
    server.await.unwrap().expect("clean stop");
}

#[tokio::test]
async fn an_injected_error_fails_its_method_only() {
    let (app, _db) = slow_app_with(Duration::from_millis(10), |config| {
        config.fault_injection = Some(rules("test.Slow/Sleep=error(unavailable)"));
    })
    .await;
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let err = call(grpc, "Sleep", None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        err.message(),
        "injected fault: error(unavailable) on test.Slow/Sleep"
    );
    call(grpc, "Other", None)
        .await
        .expect("another method of the service is not faulted");
    assert_eq!(grpc_health(grpc).await, Some(ServingStatus::Serving));

    let metrics = metrics_text(admin).await;
    for line in [
        r#"mirai_grpc_server_handled_total{grpc_service="test.Slow",grpc_method="Sleep",grpc_code="Unavailable"} 1"#,
        r#"mirai_grpc_server_handled_total{grpc_service="test.Slow",grpc_method="Other",grpc_code="Ok"} 1"#,
        r#"mirai_faults_injected_total{kind="error"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in:\n{metrics}");
    }

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn fault_rules_change_at_runtime_through_the_admin_port_and_the_handle() {
    let (app, _db) = slow_app_with(Duration::from_millis(10), |config| {
        config.fault_injection = Some(FaultRules::default());
    })
    .await;
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let faults = app.server.faults().expect("injection is on").clone();
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();
    let url = format!("http://{admin}/faults");
    let get_rules = || async {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["rules"].as_str().unwrap().to_owned()
    };

    call(grpc, "Sleep", None).await.expect("no rules yet");
    assert_eq!(get_rules().await, "");

    let response = http
        .put(&url)
        .body("test.Slow = error(PERMISSION_DENIED)")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(get_rules().await, "test.Slow=error(permission_denied)");
    for method in ["Sleep", "Other"] {
        let err = call(grpc, method, None).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{method}: {err:?}");
    }

    let response = http
        .put(&url)
        .body("test.Slow=error(teapot)")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown gRPC code `teapot`"),
        "{body}"
    );
    assert_eq!(
        get_rules().await,
        "test.Slow=error(permission_denied)",
        "a bad PUT leaves the rules alone"
    );

    let response = http.delete(&url).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(get_rules().await, "");
    call(grpc, "Sleep", None).await.expect("rules cleared");

    // The in-process handle and the admin port share one rule set.
    faults.set(rules("*=error(internal);test.Slow/Other=delay(1ms)"));
    assert_eq!(
        get_rules().await,
        "*=error(internal);test.Slow/Other=delay(1ms)"
    );
    let err = call(grpc, "Sleep", None).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    call(grpc, "Other", None)
        .await
        .expect("the method's delay rule beats the wildcard error");
    assert_eq!(
        grpc_health(grpc).await,
        Some(ServingStatus::Serving),
        "health checks are never faulted"
    );
    let metrics = metrics_text(admin).await;
    assert!(
        metrics.contains(r#"mirai_faults_injected_total{kind="delay"} 1"#),
        "{metrics}"
    );
    faults.clear();
    call(grpc, "Sleep", None).await.expect("rules cleared");

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn without_fault_injection_the_faults_endpoints_do_not_exist() {
    let (app, _db) = slow_app_with(Duration::from_millis(10), |_| {}).await;
    assert!(app.server.faults().is_none());
    let (grpc, admin) = (app.grpc_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let http = reqwest::Client::new();
    let url = format!("http://{admin}/faults");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 404);
    let put = http
        .put(&url)
        .body("*=error(internal)")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 404);
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 404);
    call(grpc, "Sleep", None).await.expect("nothing injected");
    assert!(!metrics_text(admin).await.contains("mirai_faults_injected"));

    stop.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_production_server_refuses_fault_injection() {
    // Binding needs no database; the URL is never used.
    let mut config =
        ServiceConfig::for_tests("mirai-platform-test", "postgres://127.0.0.1:1/unused");
    config.profile = Profile::Production;
    config.fault_injection = Some(FaultRules::default());
    assert!(matches!(
        GrpcServer::bind(&config, Metrics::new()).await,
        Err(ServeError::FaultInjectionInProduction)
    ));
    config.fault_injection = None;
    let server = GrpcServer::bind(&config, Metrics::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(server.faults().is_none());
}
