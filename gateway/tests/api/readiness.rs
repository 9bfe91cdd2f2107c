use std::time::Duration;

use mirai_gateway::startup::Application;
use mirai_platform::testing::{ChildProcess, conformance, http_status, wait_for_status};
use tokio_util::sync::CancellationToken;

use crate::helpers::Platform;

const BINARY: &str = env!("CARGO_BIN_EXE_mirai-gateway");

#[test]
fn malformed_config_names_the_variable() {
    for (name, value) in [
        ("MIRAI_USER_URL", "user:50051"),
        ("MIRAI_HTTP_ADDR", "eighty"),
        ("MIRAI_UPSTREAM_TIMEOUT", "soon"),
    ] {
        let (status, _, stderr) = ChildProcess::spawn(BINARY, [(name, value.to_owned())])
            .wait_timeout(Duration::from_secs(20))
            .expect("exits promptly");
        assert_eq!(status.code(), Some(78), "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[tokio::test]
async fn a_service_that_is_down_degrades_only_its_own_routes() {
    let mut platform = Platform::start().await;
    let mut config = platform.gateway_config();
    config.upstreams.prediction.breaker.open_wait = Duration::from_secs(2);
    let app = Application::build(config).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let (http, admin) = (app.http_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    let get = |path: &str| reqwest::get(format!("http://{http}{path}"));

    wait_for_status(
        &format!("http://{admin}/readyz"),
        200,
        Duration::from_secs(30),
    )
    .await;
    let status: serde_json::Value = get("/v1/status").await.unwrap().json().await.unwrap();
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["services"].as_array().unwrap().len(), 5);
    assert_eq!(status["services"][2]["circuit"], "closed", "{status}");
    assert_eq!(get("/v1/models").await.unwrap().status(), 200);

    // Prediction goes away: its routes answer 503 naming it, with Retry-After; once enough
    // calls failed the circuit opens and they are refused without waiting.
    let prediction = &mut platform.services[2];
    assert_eq!(prediction.name, "mirai-prediction");
    prediction.halt().await;
    let mut retry_after_seen = Vec::new();
    for _ in 0..15 {
        let response = get("/v1/models").await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        retry_after_seen.push(
            response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["upstream"], "prediction", "{problem}");
        assert_eq!(problem["status"], 503);
    }
    let status: serde_json::Value = get("/v1/status").await.unwrap().json().await.unwrap();
    let prediction_status = &status["services"][2];
    assert_eq!(prediction_status["name"], "prediction");
    assert_eq!(prediction_status["status"], "UNREACHABLE", "{status}");
    assert_eq!(prediction_status["circuit"], "open", "{status}");
    assert_eq!(status["ready"], false);
    assert!(
        retry_after_seen.iter().all(|&s| s >= 1),
        "{retry_after_seen:?}"
    );

    // Everything else goes on: the gateway stays ready, other services' routes answer.
    assert_eq!(
        http_status(&format!("http://{admin}/readyz")).await,
        Some(200)
    );
    assert_eq!(get("/v1/symbols").await.unwrap().status(), 200);
    for upstream in [0, 1, 3, 4] {
        assert_eq!(
            status["services"][upstream]["status"], "SERVING",
            "{status}"
        );
        assert_eq!(
            status["services"][upstream]["circuit"], "closed",
            "{status}"
        );
    }
    let metrics = mirai_platform::testing::metrics_text(admin).await;
    assert!(
        metrics.contains(
            r#"mirai_circuit_transitions_total{upstream="prediction",from="closed",to="open"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"mirai_client_rejected_total{upstream="prediction",reason="circuit_open"}"#
        ),
        "{metrics}"
    );

    // Prediction comes back on its port: after the open wait, trial calls close the circuit.
    platform
        .restart(2, async |config| {
            mirai_prediction::startup::build(&config).await
        })
        .await;
    // Serving again, but while its circuit is still open (the 2 s wait, when the restart was
    // quicker) the platform is not ready: its routes would answer 503.
    let status: serde_json::Value = get("/v1/status").await.unwrap().json().await.unwrap();
    if status["services"][2]["circuit"] == "open" {
        assert_eq!(status["ready"], false, "{status}");
    }
    let mut last = 0;
    for _ in 0..100 {
        last = get("/v1/models").await.unwrap().status().as_u16();
        if last == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 200, "prediction's routes recover");
    // The trial calls (three by default) decide: all succeed, so the circuit closes.
    for _ in 0..2 {
        assert_eq!(get("/v1/models").await.unwrap().status(), 200);
    }
    let status: serde_json::Value = get("/v1/status").await.unwrap().json().await.unwrap();
    assert_eq!(status["services"][2]["circuit"], "closed", "{status}");
    assert_eq!(status["ready"], true, "{status}");

    // Unknown routes answer problem+json.
    let response = get("/v1/nope").await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "https://mirai.dev/problems/no-route");
    assert_eq!(problem["status"], 404);

    // Metrics count requests by route template.
    let metrics = mirai_platform::testing::metrics_text(admin).await;
    assert!(
        metrics.contains(
            r#"mirai_http_server_requests_total{method="GET",route="/v1/status",status="200"} 4"#
        ),
        "{metrics}"
    );

    stop.cancel();
    gateway.await.unwrap().unwrap();
    assert_eq!(
        http_status(&format!("http://{admin}/healthz")).await,
        None,
        "admin closed after shutdown"
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits() {
    let platform = Platform::start().await;
    conformance::sigterm_drains_and_exits(BINARY, &platform.upstream_env(), false).await;
}
