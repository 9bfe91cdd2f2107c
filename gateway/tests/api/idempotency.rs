//! `Idempotency-Key` through the real gateway: answers that carry credentials (tokens, API-key
//! secrets) are never kept for replay — neither in process nor in Redis. (The size cap, the
//! bounds of the in-process store and the per-principal scoping are unit-tested in
//! `gateway/src/middleware/idempotency/`; scoping of anonymous callers by client IP in `client_ip.rs`.)

use redis::AsyncCommands as _;
use serde_json::{Value, json};

use crate::helpers::{Gateway, PASSWORD, Platform, answer, serve};

async fn post_with_key(
    gw: &Gateway,
    path: &str,
    token: Option<&str>,
    key: &str,
    body: &Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = gw
        .http
        .post(gw.url(path))
        .header("idempotency-key", key)
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    answer(request.send().await.unwrap()).await
}

#[tokio::test]
async fn credential_answers_are_never_kept_for_replay() {
    let gw = Gateway::start().await;
    let (_, access, _) = gw.sign_up("tess@example.com").await;
    let credentials = json!({ "email": "tess@example.com", "password": PASSWORD });

    // Login: the repeat logs in again (new tokens), it is not served the stored tokens.
    let first = post_with_key(&gw, "/v1/auth/login", None, "login-1", &credentials).await;
    let again = post_with_key(&gw, "/v1/auth/login", None, "login-1", &credentials).await;
    assert_eq!((first.0, again.0), (200, 200), "{} {}", first.2, again.2);
    assert!(
        !again.1.contains_key("idempotent-replayed"),
        "login tokens were replayed from the idempotency store"
    );
    assert_ne!(first.2["access_token"], again.2["access_token"]);

    // Refresh: the repeat really runs (and meets the spent refresh token).
    let refresh = json!({ "refresh_token": first.2["refresh_token"] });
    let first = post_with_key(&gw, "/v1/auth/refresh", None, "refresh-1", &refresh).await;
    assert_eq!(first.0, 200, "{}", first.2);
    let again = post_with_key(&gw, "/v1/auth/refresh", None, "refresh-1", &refresh).await;
    assert!(
        !again.1.contains_key("idempotent-replayed"),
        "refreshed tokens were replayed: {}",
        again.2
    );
    assert_ne!(again.0, 200, "a spent refresh token buys nothing");

    // A new API key's secret is shown once, not kept for 24 hours.
    let key = json!({ "name": "ci" });
    let first = post_with_key(&gw, "/v1/me/api-keys", Some(&access), "key-1", &key).await;
    assert_eq!(first.0, 201, "{}", first.2);
    let again = post_with_key(&gw, "/v1/me/api-keys", Some(&access), "key-1", &key).await;
    assert!(
        !again.1.contains_key("idempotent-replayed"),
        "an API-key secret was replayed"
    );
    assert_eq!(again.0, 409, "the repeat ran: the name is taken");
    gw.stop().await;
}

#[tokio::test]
async fn credential_answers_never_reach_redis() {
    let platform = Platform::start().await;
    let redis_url = std::env::var("MIRAI_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let mut config = platform.gateway_config();
    config.redis_url = Some(redis_url.clone());
    config.redis_prefix = prefix.clone();
    let (base, stop, _) = serve(config).await;
    let http = reqwest::Client::new();
    let credentials = json!({ "email": "uma@example.com", "password": PASSWORD });
    let post = |path: &str, key: &str| {
        http.post(format!("{base}{path}"))
            .header("idempotency-key", key)
            .json(&credentials)
            .send()
    };
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pattern = format!("{prefix}idem:*");

    let registered = answer(post("/v1/auth/register", "reg-1").await.unwrap()).await;
    assert_eq!(registered.0, 201, "{}", registered.2);
    let kept: Vec<String> = redis.keys(&pattern).await.unwrap();
    assert_eq!(kept.len(), 1, "an ordinary answer is kept: {kept:?}");

    let login = answer(post("/v1/auth/login", "login-1").await.unwrap()).await;
    assert_eq!(login.0, 200, "{}", login.2);
    let kept: Vec<String> = redis.keys(&pattern).await.unwrap();
    assert_eq!(
        kept.len(),
        1,
        "the login answer (tokens) went to Redis: {kept:?}"
    );
    let again = answer(post("/v1/auth/login", "login-1").await.unwrap()).await;
    assert_eq!(again.0, 200);
    assert!(!again.1.contains_key("idempotent-replayed"));
    stop.cancel();
}
