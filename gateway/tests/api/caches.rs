//! The gateway's caches report their lookups in `mirai_cache_requests_total{cache,result}`.

use mirai_gateway::startup::Application;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{PASSWORD, Platform, login, register};

fn count(metrics: &str, cache: &str, result: &str) -> u64 {
    let prefix = format!(r#"mirai_cache_requests_total{{cache="{cache}",result="{result}"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.parse().unwrap())
}

#[tokio::test]
async fn token_key_lookups_and_refused_api_keys_count_hits_and_misses() {
    let platform = Platform::start().await;
    let app = Application::build(platform.gateway_config()).await.unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let (base, admin) = (format!("http://{}", app.http_addr()), app.admin_addr());
    let stop = CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    let http = reqwest::Client::new();
    let credentials = json!({ "email": "cached@example.com", "password": PASSWORD });
    register(&http, &base, &credentials).await;
    let tokens = login(&http, &base, &credentials).await;
    let access = tokens["access_token"].as_str().unwrap();
    let metrics = async || mirai_platform::testing::metrics_text(admin).await;
    let before = metrics().await;

    for _ in 0..3 {
        let me = http
            .get(format!("{base}/v1/me"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), 200);
    }
    // The same unknown key twice: the user service refuses it once, the gateway remembers.
    let bogus = format!("mk_{}", uuid::Uuid::new_v4().simple());
    for _ in 0..2 {
        let refused = http
            .get(format!("{base}/v1/me"))
            .header("x-api-key", &bogus)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    }

    let after = metrics().await;
    let delta = |cache, result| count(&after, cache, result) - count(&before, cache, result);
    // The token is verified once (one key lookup), then recognised until its `exp`.
    assert_eq!(
        delta("jwks", "hit") + delta("jwks", "miss"),
        1,
        "one key lookup per distinct token: {after}"
    );
    assert_eq!(delta("access_tokens", "miss"), 1, "{after}");
    assert_eq!(delta("access_tokens", "hit"), 2, "{after}");
    assert_eq!(delta("api_key_refusals", "miss"), 1, "{after}");
    assert_eq!(delta("api_key_refusals", "hit"), 1, "{after}");

    stop.cancel();
    gateway.await.unwrap().unwrap();
}
