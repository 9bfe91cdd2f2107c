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
async fn readyz_is_green_only_when_every_upstream_serves() {
    let mut platform = Platform::start().await;
    let app = Application::build(platform.gateway_config()).await.unwrap();
    let (http, admin) = (app.http_addr(), app.admin_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));

    wait_for_status(
        &format!("http://{admin}/readyz"),
        200,
        Duration::from_secs(30),
    )
    .await;
    let status: serde_json::Value = reqwest::get(format!("http://{http}/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["services"].as_array().unwrap().len(), 5);

    // One upstream goes away: readiness turns red and names it.
    let prediction = &mut platform.services[2];
    assert_eq!(prediction.name, "mirai-prediction");
    prediction.halt().await;
    wait_for_status(
        &format!("http://{admin}/readyz"),
        503,
        Duration::from_secs(10),
    )
    .await;
    let body: serde_json::Value = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let failing: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["prediction"], "{body}");

    // Unknown routes answer problem+json.
    let response = reqwest::get(format!("http://{http}/v1/nope"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "https://mirai.dev/problems/no-route");
    assert_eq!(problem["status"], 404);

    // Metrics count requests by route template.
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"mirai_http_server_requests_total{method="GET",route="/v1/status",status="200"} 1"#
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
