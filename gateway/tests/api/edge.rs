//! The edge: token attacks, CORS, security headers, request ids, problem+json on every error
//! path, rate limits (in process and shared through Redis) and the OpenAPI document.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{Gateway, Platform, answer, serve};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_with_401() {
    let gw = Gateway::start().await;
    let (user_id, access, _) = gw.sign_up("mallory@example.com").await;
    let header = jsonwebtoken::decode_header(&access).unwrap();
    let kid = header.kid.clone().unwrap();
    let pem = std::fs::read(gw.platform.keys_dir.join("current.pem")).unwrap();
    let key = EncodingKey::from_ed_pem(&pem).unwrap();
    let claims = || {
        json!({
            "iss": "https://mirai.local", "aud": "mirai-api", "sub": user_id,
            "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "t1", "roles": ["user", "admin"]
        })
    };
    let sign = |claims: Value, header: Option<Header>| {
        let header = header.unwrap_or_else(|| {
            let mut h = Header::new(Algorithm::EdDSA);
            h.typ = Some("at+jwt".into());
            h.kid = Some(kid.clone());
            h
        });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let with = |key: &str, value: Value| {
        let mut c = claims();
        c[key] = value;
        c
    };
    // The genuine key signs a valid token: the gateway takes it (roles as signed).
    let valid = sign(claims(), None);
    assert_eq!(gw.get("/v1/me", Some(&valid)).await.0, 200);

    let parts: Vec<&str> = access.split('.').collect();
    let none_header =
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"at+jwt","kid":"{kid}"}}"#));
    let jwks: Value = gw.get("/.well-known/jwks.json", None).await.2;
    let public = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".into());
    hs.kid = Some(kid.clone());
    let confused =
        jsonwebtoken::encode(&hs, &claims(), &EncodingKey::from_secret(&public)).unwrap();
    let forged_payload = URL_SAFE_NO_PAD.encode(with("roles", json!(["admin"])).to_string());
    let mut untyped = Header::new(Algorithm::EdDSA);
    untyped.kid = Some(kid.clone());
    let mut unknown_kid = Header::new(Algorithm::EdDSA);
    unknown_kid.typ = Some("at+jwt".into());
    unknown_kid.kid = Some("not-a-published-key".into());
    let cases = [
        ("alg none", format!("{none_header}.{}.", parts[1])),
        ("HS256 with the public key", confused),
        (
            "tampered payload",
            format!("{}.{forged_payload}.{}", parts[0], parts[2]),
        ),
        ("no typ", sign(claims(), Some(untyped))),
        ("unknown kid", sign(claims(), Some(unknown_kid))),
        ("expired", sign(with("exp", json!(now() - 60)), None)),
        (
            "nbf in the future",
            sign(with("nbf", json!(now() + 120)), None),
        ),
        (
            "wrong iss",
            sign(with("iss", json!("https://evil.test")), None),
        ),
        ("wrong aud", sign(with("aud", json!("another-api")), None)),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (name, token) in cases {
        let (status, headers, problem) = gw.get("/v1/me", Some(&token)).await;
        assert_eq!(status, 401, "{name}: {problem}");
        assert_eq!(
            problem["type"], "https://mirai.dev/problems/unauthenticated",
            "{name}"
        );
        assert!(headers.contains_key("www-authenticate"), "{name}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn cors_preflight_names_allowed_origins_only() {
    let gw = Gateway::start_with(|config| {
        config.cors_origins = vec!["https://app.mirai.test".parse().unwrap()];
    })
    .await;
    let preflight = |origin: &'static str| {
        gw.http
            .request(reqwest::Method::OPTIONS, gw.url("/v1/me"))
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.mirai.test").await.unwrap();
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.mirai.test"
    );
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    let allowed_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for name in ["authorization", "idempotency-key", "last-event-id"] {
        assert!(
            allowed_headers.contains(name),
            "{name} in {allowed_headers}"
        );
    }
    assert!(!headers.contains_key("access-control-allow-credentials"));

    let refused = preflight("https://evil.test").await.unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );

    let simple = gw
        .http
        .get(gw.url("/v1/status"))
        .header("origin", "https://app.mirai.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.mirai.test"
    );
    assert!(
        simple.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("ratelimit")
    );
    gw.stop().await;
}

/// Asserts the RFC 9457 shape and our conventions on one error response.
fn assert_problem(what: &str, response: &(u16, reqwest::header::HeaderMap, Value), status: u16) {
    let (got, headers, body) = response;
    assert_eq!(*got, status, "{what}: {body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{what}"
    );
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://mirai.dev/problems/")),
        "{what}: {body}"
    );
    assert!(body["title"].is_string(), "{what}: {body}");
    assert_eq!(
        body["request_id"].as_str(),
        headers["x-request-id"].to_str().ok(),
        "{what}: the body names the request"
    );
    for name in [
        "x-content-type-options",
        "x-frame-options",
        "strict-transport-security",
    ] {
        assert!(headers.contains_key(name), "{what}: {name} missing");
    }
}

#[tokio::test]
async fn every_error_path_is_problem_json_with_the_request_id() {
    let gw = Gateway::start_with(|config| config.max_body = 2048).await;
    let (_, user, _) = gw.sign_up("gus@example.com").await;
    let send = |request: reqwest::RequestBuilder| async move {
        answer(request.send().await.unwrap()).await
    };

    assert_problem(
        "no route",
        &send(gw.http.get(gw.url("/v1/nope"))).await,
        404,
    );
    assert_problem(
        "wrong method",
        &send(gw.http.put(gw.url("/v1/status"))).await,
        405,
    );
    assert_problem(
        "not JSON",
        &send(
            gw.http
                .post(gw.url("/v1/auth/login"))
                .header("content-type", "text/plain")
                .body("email=x"),
        )
        .await,
        415,
    );
    assert_problem(
        "malformed JSON",
        &send(
            gw.http
                .post(gw.url("/v1/auth/login"))
                .header("content-type", "application/json")
                .body("{\"email\":"),
        )
        .await,
        400,
    );
    assert_problem(
        "too large",
        &send(gw.http.post(gw.url("/v1/auth/login")).json(&json!({
            "email": "a@example.com", "password": "x".repeat(4096)
        })))
        .await,
        413,
    );
    assert_problem("anonymous", &send(gw.http.get(gw.url("/v1/me"))).await, 401);
    assert_problem(
        "not admin",
        &send(gw.http.get(gw.url("/v1/admin/users")).bearer_auth(&user)).await,
        403,
    );
    assert_problem(
        "bad query",
        &send(gw.http.get(gw.url("/v1/stocks/SPX/bars?timeframe=2Days"))).await,
        400,
    );
    assert_problem(
        "unknown symbol",
        &send(gw.http.get(gw.url("/v1/symbols/NOPE"))).await,
        404,
    );
    assert_problem(
        "bad Authorization",
        &send(
            gw.http
                .get(gw.url("/v1/me"))
                .header("authorization", "Basic Zm9vOmJhcg=="),
        )
        .await,
        401,
    );

    // A well-formed incoming request id is kept; a bad one is replaced.
    let kept = send(
        gw.http
            .get(gw.url("/v1/nope"))
            .header("x-request-id", "req-abc-123"),
    )
    .await;
    assert_eq!(kept.1["x-request-id"], "req-abc-123");
    assert_eq!(kept.2["request_id"], "req-abc-123");
    let replaced = send(
        gw.http
            .get(gw.url("/v1/nope"))
            .header("x-request-id", "x".repeat(300)),
    )
    .await;
    let id = replaced.1["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    // Success responses carry the security headers too, and no-store unless cacheable.
    let (status, headers, _) = gw.get("/v1/me", Some(&user)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["content-security-policy"], "frame-ancestors 'none'");
    assert_eq!(
        headers["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    gw.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_headers() {
    let gw = Gateway::start_with(|config| {
        config.rate_limits.auth = "3/1m".parse().unwrap();
    })
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..4 {
        let response = gw
            .post(
                "/v1/auth/login",
                None,
                json!({ "email": "nobody@example.com", "password": "whatever it is" }),
            )
            .await;
        statuses.push(response.0);
        assert_eq!(response.1["ratelimit-policy"], "\"auth\";q=3;w=60");
        last = Some(response);
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let (_, headers, problem) = last.unwrap();
    assert_eq!(problem["type"], "https://mirai.dev/problems/rate-limited");
    assert!(
        problem["detail"].as_str().unwrap().contains("auth"),
        "{problem}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one token per 20 s: {retry}");
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"auth\";r=0;")
    );
    // Other routes are under the (roomier) anonymous policy.
    let (status, headers, _) = gw.get("/v1/status", None).await;
    assert_eq!(status, 200);
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"anonymous\";r=")
    );
    gw.stop().await;
}

#[tokio::test]
async fn two_gateways_share_their_limits_through_redis() {
    let platform = Platform::start().await;
    let redis_url = std::env::var("MIRAI_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    two_gateways_share_a_limit(|| {
        let mut config = platform.gateway_config();
        config.redis_url = Some(redis_url.clone());
        config.redis_prefix = prefix.clone();
        config
    })
    .await;
}

/// Seven anonymous requests alternating between two gateways built by `config` (with the
/// anonymous limit set to 5 a minute here): the sixth and seventh are refused whichever replica
/// they reach — the limit is shared through Redis.
pub(crate) async fn two_gateways_share_a_limit(config: impl Fn() -> mirai_gateway::config::Config) {
    let config = || {
        let mut config = config();
        config.rate_limits.anonymous = "5/1m".parse().unwrap();
        config
    };
    let (a, stop_a, task_a) = serve(config()).await;
    let (b, stop_b, task_b) = serve(config()).await;
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    for i in 0..7 {
        let base = if i % 2 == 0 { &a } else { &b };
        let response = http.get(format!("{base}/v1/status")).send().await.unwrap();
        let remaining = response
            .headers()
            .get("ratelimit")
            .map(|v| v.to_str().unwrap().to_owned());
        seen.push((response.status().as_u16(), remaining));
    }
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429], "{seen:?}");
    assert_eq!(
        seen[4]
            .1
            .as_deref()
            .map(|h| h.starts_with("\"anonymous\";r=0;")),
        Some(true),
        "{seen:?}"
    );
    stop_a.cancel();
    stop_b.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task_a).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), task_b).await;
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_other_bodies_and_span_replicas() {
    let platform = Platform::start().await;
    let redis_url = std::env::var("MIRAI_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let config = || {
        let mut config = platform.gateway_config();
        config.redis_url = Some(redis_url.clone());
        config.redis_prefix = prefix.clone();
        config
    };
    let (a, stop_a, _) = serve(config()).await;
    let (b, stop_b, _) = serve(config()).await;
    let http = reqwest::Client::new();
    let register = |base: &str, key: &str, email: &str| {
        http.post(format!("{base}/v1/auth/register"))
            .header("idempotency-key", key)
            .json(&json!({ "email": email, "password": crate::helpers::PASSWORD }))
            .send()
    };
    let first = answer(register(&a, "k-1", "ivy@example.com").await.unwrap()).await;
    assert_eq!(first.0, 201, "{}", first.2);
    assert!(!first.1.contains_key("idempotent-replayed"));
    // The repeat reaches the other replica and still gets the stored answer, not a 409.
    let again = answer(register(&b, "k-1", "ivy@example.com").await.unwrap()).await;
    assert_eq!(again.0, 201, "{}", again.2);
    assert_eq!(again.1["idempotent-replayed"], "true");
    assert_eq!(again.2, first.2, "the same body");
    assert_eq!(again.1["location"], "/v1/me");
    let other = answer(register(&a, "k-1", "jim@example.com").await.unwrap()).await;
    assert_eq!(other.0, 422, "{}", other.2);
    assert_eq!(
        other.2["type"],
        "https://mirai.dev/problems/idempotency-key-reused"
    );
    // Without a key the duplicate really runs: a taken address is answered as a new account
    // (registration reveals no addresses), with an id of its own, not the stored answer.
    let plain = answer(
        http.post(format!("{a}/v1/auth/register"))
            .json(&json!({ "email": "ivy@example.com", "password": crate::helpers::PASSWORD }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(plain.0, 201, "{}", plain.2);
    assert!(!plain.1.contains_key("idempotent-replayed"));
    assert_ne!(plain.2["user_id"], first.2["user_id"]);
    stop_a.cancel();
    stop_b.cancel();
}

#[tokio::test]
async fn the_openapi_document_matches_the_router() {
    let gw = Gateway::start().await;
    let (status, _, document) = gw.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    // The committed copy (docs/openapi.json) is what the running gateway serves.
    let generated =
        serde_json::to_string_pretty(&mirai_gateway::openapi::document()).unwrap() + "\n";
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    if std::env::var_os("MIRAI_UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json is stale: run `MIRAI_UPDATE_OPENAPI=1 cargo nextest run -p mirai-gateway openapi`"
    );
    assert_eq!(serde_json::from_str::<Value>(&committed).unwrap(), document);

    // Every schema the document refers to is in it.
    let text = document.to_string();
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(
            schemas.contains_key(name),
            "#/components/schemas/{name} is not defined"
        );
    }

    // Every documented operation is routed: none falls through to the no-route 404 or 405.
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path.replace("{", "").replace("}", "");
        for method in item.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let response = gw
                .http
                .request(method.clone(), gw.url(&concrete))
                .json(&json!({}))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert_ne!(
                body["type"], "https://mirai.dev/problems/no-route",
                "{method} {path} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 30, "only {operations} operations documented");

    // And nothing is routed around the document: every route is registered through
    // `routes!`, which puts it in the document; plain `.route(` calls would not. The one
    // exception is the web console's static files (`routes/console.rs`), not API operations.
    let mut folders = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            if path.ends_with("routes/console.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [".route(", ".route_service(", ".nest("] {
                assert!(
                    !text.contains(needle),
                    "{}: `{needle}` registers a route the OpenAPI document does not know",
                    path.display()
                );
            }
        }
    }

    // The documentation page is served from the binary.
    let page = gw.http.get(gw.url("/docs/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let asset = gw
        .http
        .get(gw.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), 200, "assets are vendored, not from a CDN");
    assert!(
        !html.contains("https://"),
        "the page loads nothing from the network"
    );
    gw.stop().await;
}

#[tokio::test]
async fn the_console_is_served_under_its_path_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<!doctype html><title>console</title>",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("assets")).unwrap();
    std::fs::write(dir.path().join("assets/app.js"), "console.log(1)").unwrap();
    let path = dir.path().to_owned();
    let gw = Gateway::start_with(move |config| config.console_dir = Some(path)).await;
    let page = gw.http.get(gw.url("/console/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>console</title>")
    );
    let script = gw
        .http
        .get(gw.url("/console/assets/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(gw.url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 308, "relative asset paths need the slash");
    assert_eq!(bare.headers()["location"], "/console/");
    let missing = gw
        .http
        .get(gw.url("/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    gw.stop().await;

    // Without the setting there is no console.
    let plain = Gateway::start().await;
    let none = plain.http.get(plain.url("/console/")).send().await.unwrap();
    assert_eq!(none.status(), 404);
    plain.stop().await;
}
