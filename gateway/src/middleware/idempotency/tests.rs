use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use mirai_platform::auth::Role;
use tower::ServiceExt as _;

use super::*;

/// A router behind the middleware whose handler counts its runs and answers `x-size` bytes
/// (`Cache-Control: no-store` when `x-no-store` is present); `x-user` becomes the principal.
fn app(store: Arc<Idempotency>, runs: Arc<AtomicUsize>) -> Router {
    let handler = move |headers: axum::http::HeaderMap| {
        let runs = runs.clone();
        async move {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            let size: usize = headers
                .get("x-size")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(16);
            let mut body = format!("run {n} ").into_bytes();
            body.resize(size.max(body.len()), b'.');
            let mut response = Response::new(Body::from(body));
            if headers.contains_key("x-no-store") {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            response
        }
    };
    Router::new()
        // Every path (the handler is the fallback: no `routes!` needed in a unit test).
        .fallback(handler)
        .layer(axum::middleware::from_fn_with_state(store, idempotent))
        .layer(axum::middleware::from_fn(
            |mut request: Request, next: Next| async move {
                if let Some(user) = request.headers().get("x-user") {
                    let principal = Principal {
                        user_id: user.to_str().unwrap().to_owned(),
                        roles: BTreeSet::from([Role::User]),
                        api_key_id: None,
                    };
                    request.extensions_mut().insert(principal);
                }
                next.run(request).await
            },
        ))
}

async fn send(
    app: &Router,
    path: &str,
    key: &str,
    headers: &[(&'static str, String)],
    body: &str,
) -> (StatusCode, bool, Bytes) {
    let mut request = Request::post(path).header("idempotency-key", key);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let replayed = response.headers().contains_key(&REPLAYED);
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, replayed, body)
}

#[tokio::test]
async fn a_small_answer_is_replayed() {
    let runs = Arc::new(AtomicUsize::new(0));
    let app = app(Arc::new(Idempotency::memory(1024)), runs.clone());
    let first = send(&app, "/v1/alerts", "k", &[], "{}").await;
    let again = send(&app, "/v1/alerts", "k", &[], "{}").await;
    assert_eq!((first.1, again.1), (false, true));
    assert_eq!(first.2, again.2);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_answer_over_64_kib_is_answered_in_full_but_not_kept() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(Idempotency::memory(1024));
    let app = app(store.clone(), runs.clone());
    let big = [("x-size", (100 * 1024).to_string())];
    let first = send(&app, "/v1/predictions:batch", "k", &big, "{}").await;
    assert_eq!(first.0, StatusCode::OK);
    assert_eq!(
        first.2.len(),
        100 * 1024,
        "the whole answer reaches the client"
    );
    let again = send(&app, "/v1/predictions:batch", "k", &big, "{}").await;
    assert_eq!(again.0, StatusCode::OK);
    assert!(!again.1, "a 100 KiB answer was kept and replayed");
    assert_eq!(again.2.len(), 100 * 1024);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the repeat ran again");
    assert_eq!(store.usage(), (0, 0), "nothing kept, the key released");
    // Just under the cap is still kept.
    let fits = [("x-size", (64 * 1024).to_string())];
    send(&app, "/v1/predictions:batch", "k2", &fits, "{}").await;
    assert!(
        send(&app, "/v1/predictions:batch", "k2", &fits, "{}")
            .await
            .1
    );
}

#[tokio::test]
async fn credential_answers_are_never_kept() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(Idempotency::memory(1024));
    let app = app(store.clone(), runs.clone());
    // The routes whose answers carry tokens or secrets, even without `no-store`…
    let routes = [
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/me/password",
        "/v1/me/api-keys",
        "/v1/webhooks",
        "/v1/webhooks/0190b7a4-0000-7000-8000-000000000001/rotate-secret",
    ];
    for path in routes {
        let user = [("x-user", "u1".to_owned())];
        let first = send(&app, path, "k", &user, "{}").await;
        let again = send(&app, path, "k", &user, "{}").await;
        assert!(!first.1 && !again.1, "{path} was replayed");
        assert_ne!(first.2, again.2, "{path}: the repeat ran");
    }
    // …and any answer its handler marks `Cache-Control: no-store`.
    let no_store = [("x-no-store", String::new())];
    send(&app, "/v1/anything", "k", &no_store, "{}").await;
    assert!(!send(&app, "/v1/anything", "k", &no_store, "{}").await.1);
    assert_eq!(store.usage(), (0, 0));
}

#[tokio::test]
async fn one_key_from_two_principals_does_not_collide() {
    let runs = Arc::new(AtomicUsize::new(0));
    let app = app(Arc::new(Idempotency::memory(1024)), runs.clone());
    let alice = [("x-user", "alice".to_owned())];
    let bob = [("x-user", "bob".to_owned())];
    let a = send(&app, "/v1/alerts", "same", &alice, r#"{"a":1}"#).await;
    let b = send(&app, "/v1/alerts", "same", &bob, r#"{"b":2}"#).await;
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK), "no 422");
    assert!(!b.1, "bob is not served alice's answer");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // Each still replays their own.
    let a2 = send(&app, "/v1/alerts", "same", &alice, r#"{"a":1}"#).await;
    assert!(a2.1);
    assert_eq!(a2.2, a.2);
}

#[tokio::test]
async fn the_memory_store_stays_within_64_mib() {
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(Idempotency::memory(1024));
    let app = app(store.clone(), runs.clone());
    // One principal, 1,200 distinct keys, each answer 60 KiB (72 MiB in all).
    let user = [
        ("x-user", "filler".to_owned()),
        ("x-size", (60 * 1024).to_string()),
    ];
    for i in 0..1200 {
        let (status, _, _) = send(&app, "/v1/alerts", &format!("k{i}"), &user, "{}").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (records, bytes) = store.usage();
    assert!(
        bytes <= 64 * 1024 * 1024,
        "{records} records, {bytes} bytes"
    );
    // The most recent answer is still there.
    assert!(send(&app, "/v1/alerts", "k1199", &user, "{}").await.1);
}

fn done(body: &str) -> Record {
    Record::Done {
        fingerprint: "f".repeat(64),
        status: 200,
        headers: vec![],
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

#[test]
fn a_shard_evicts_the_least_recently_used_record_first() {
    let now = Instant::now();
    let mut shard = Shard::new(usize::MAX, 3);
    for key in [[1; 32], [2; 32], [3; 32]] {
        shard.put(key, done("x"), KEEP, now);
    }
    assert!(
        shard.get(&[1; 32], now).is_some(),
        "1 is now the most recent"
    );
    shard.put([4; 32], done("x"), KEEP, now);
    assert_eq!(shard.records.len(), 3);
    assert!(
        shard.get(&[2; 32], now).is_none(),
        "2 was the least recently used"
    );
    for key in [[1; 32], [3; 32], [4; 32]] {
        assert!(shard.get(&key, now).is_some());
    }
}

#[test]
fn a_shard_stays_within_its_bytes_and_drops_expired_records_first() {
    let now = Instant::now();
    let record = done(&"b".repeat(1000));
    let weight = record.weight();
    let mut shard = Shard::new(weight * 4, usize::MAX);
    for i in 0..10u8 {
        shard.put([i; 32], record.clone(), KEEP, now);
        assert!(shard.bytes <= weight * 4, "{} bytes", shard.bytes);
    }
    assert_eq!(shard.records.len(), 4);
    assert_eq!(
        shard.bytes,
        shard.records.values().map(|e| e.weight).sum::<usize>()
    );
    // A record past its time is gone when looked up, and from the cold end on the next
    // write, whatever the bounds.
    let mut shard = Shard::new(usize::MAX, usize::MAX);
    shard.put([1; 32], done("old"), Duration::from_secs(1), now);
    shard.put([2; 32], done("new"), KEEP, now + Duration::from_secs(2));
    assert_eq!(shard.records.len(), 1, "the expired record was dropped");
    assert!(shard.get(&[1; 32], now + Duration::from_secs(2)).is_none());
    shard.put([3; 32], done("x"), Duration::from_secs(1), now);
    assert!(shard.get(&[3; 32], now + Duration::from_secs(5)).is_none());
    assert_eq!(shard.records.len(), 1);
}

#[tokio::test]
async fn one_callers_flood_does_not_evict_another_callers_records() {
    let limits = Limits {
        max_records: SHARDS * 8,
        ..Limits::default()
    };
    let store = Arc::new(Idempotency::memory_with(1024, limits));
    let app = app(store.clone(), Arc::new(AtomicUsize::new(0)));
    let flooder = "user:flooder";
    let victim = (0..)
        .map(|i| format!("victim-{i}"))
        .find(|v| shard_of(&format!("user:{v}")) != shard_of(flooder))
        .unwrap();
    let victim = [("x-user", victim)];
    send(&app, "/v1/alerts", "mine", &victim, "{}").await;
    let flood = [("x-user", "flooder".to_owned())];
    for i in 0..1_000 {
        send(&app, "/v1/alerts", &format!("k{i}"), &flood, "{}").await;
    }
    let (records, _) = store.usage();
    assert!(records <= SHARDS * 8, "{records} records");
    assert!(
        send(&app, "/v1/alerts", "mine", &victim, "{}").await.1,
        "the victim's answer is still replayed"
    );
    assert!(send(&app, "/v1/alerts", "k999", &flood, "{}").await.1);
    assert!(
        !send(&app, "/v1/alerts", "k0", &flood, "{}").await.1,
        "the flooder's oldest record was evicted"
    );
}

#[test]
fn redis_records_keep_their_format() {
    let record = done("hello");
    let json = serde_json::to_string(&record).unwrap();
    assert!(json.contains(r#""body":"aGVsbG8=""#), "{json}");
    assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
}

/// The same rules with the records in Redis.
#[tokio::test]
async fn redis_keeps_only_small_answers_without_credentials_per_principal() {
    let url = std::env::var("MIRAI_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let connection = ConnectionManager::new(redis::Client::open(url).unwrap())
        .await
        .expect("Redis (MIRAI_TEST_REDIS_URL) is reachable");
    let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
    let store = Arc::new(Idempotency::redis(connection.clone(), &prefix, 1024));
    let runs = Arc::new(AtomicUsize::new(0));
    let app = app(store, runs.clone());
    let alice = [("x-user", "alice".to_owned())];
    let big = [
        ("x-user", "alice".to_owned()),
        ("x-size", (100 * 1024).to_string()),
    ];
    for (path, key, headers) in [
        ("/v1/predictions:batch", "big", &big[..]),
        ("/v1/auth/login", "login", &alice[..]),
        ("/v1/me/api-keys", "api-key", &alice[..]),
    ] {
        let first = send(&app, path, key, headers, "{}").await;
        let again = send(&app, path, key, headers, "{}").await;
        assert!(!again.1, "{path} replayed from Redis");
        assert_eq!(first.2.len(), again.2.len());
    }
    let keys: Vec<String> = connection
        .clone()
        .keys(format!("{prefix}idem:*"))
        .await
        .unwrap();
    assert!(keys.is_empty(), "kept in Redis: {keys:?}");
    // Small answers are kept, per principal.
    let bob = [("x-user", "bob".to_owned())];
    send(&app, "/v1/alerts", "same", &alice, r#"{"a":1}"#).await;
    let b = send(&app, "/v1/alerts", "same", &bob, r#"{"b":2}"#).await;
    assert_eq!(b.0, StatusCode::OK, "no 422 across principals");
    assert!(
        send(&app, "/v1/alerts", "same", &alice, r#"{"a":1}"#)
            .await
            .1
    );
    assert!(send(&app, "/v1/alerts", "same", &bob, r#"{"b":2}"#).await.1);
    let keys: Vec<String> = connection
        .clone()
        .keys(format!("{prefix}idem:*"))
        .await
        .unwrap();
    assert_eq!(keys.len(), 2);
    let _: () = connection.clone().del(keys).await.unwrap();
}
