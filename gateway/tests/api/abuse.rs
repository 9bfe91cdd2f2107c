//! The abuse suite (issue 17): what one client can make the platform do for everyone else,
//! through the real gateway in front of the real services.
//!
//! Clients are told apart by `X-Forwarded-For` behind one trusted proxy hop, as behind the
//! Istio ingress gateway.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::helpers::{Gateway, Platform, answer};

const ATTACKER: &str = "203.0.113.66";

/// Rows the user service audited as refused API keys.
async fn rejected_key_rows(gw: &Gateway) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE kind = 'api_key_rejected'")
        .fetch_one(&gw.platform.services[0].pool)
        .await
        .unwrap()
}

/// A new API key (scope `user`) of the account of `access`: its secret and id.
async fn api_key(gw: &Gateway, access: &str) -> (String, String) {
    let (status, _, created) = gw
        .post(
            "/v1/me/api-keys",
            Some(access),
            json!({ "name": "bot", "scopes": ["user"] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["secret"].as_str().unwrap().to_owned(),
        created["api_key"]["api_key_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// A gateway in front of a platform with the sample bars (SPX), adjusted by `adjust`.
async fn gateway_with_sample(adjust: impl FnOnce(&mut mirai_gateway::config::Config)) -> Gateway {
    let platform = Platform::start().await;
    mirai_stock_data::bars::load_sample(&platform.services[1].pool)
        .await
        .unwrap();
    Gateway::start_on(platform, adjust).await
}

fn bogus_key() -> String {
    format!("mk_{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_thousand_bogus_api_keys_from_one_address_are_limited_before_the_lookup() {
    let gw = Gateway::start_with(|config| config.trusted_proxy_hops = 1).await;
    let (_, access, _) = gw.sign_up("neighbour@example.com").await;
    let (good_key, _) = api_key(&gw, &access).await;
    let from = |ip: &'static str, key: String| {
        gw.http
            .get(gw.url("/v1/me"))
            .header("x-forwarded-for", ip)
            .header("x-api-key", key)
    };
    let before = rejected_key_rows(&gw).await;

    let started = std::time::Instant::now();
    let answers: Vec<(u16, reqwest::header::HeaderMap, Value)> = futures::stream::iter(0..1000)
        .map(|_| async { answer(from(ATTACKER, bogus_key()).send().await.unwrap()).await })
        .buffer_unordered(10)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    let refused = answers.iter().filter(|(s, _, _)| *s == 401).count();
    assert_eq!(limited.len() + refused, 1000, "only 401 and 429");
    let lookups = rejected_key_rows(&gw).await - before;
    eprintln!(
        "1000 bogus keys in {elapsed:?}: {refused} answered 401, {} answered 429, {lookups} \
         lookups audited by the user service",
        limited.len()
    );
    // 20 failures per minute (one every 3 s) plus the requests already in flight (10).
    let bound = 20 + 10 + elapsed.as_secs() as i64 / 3 + 1;
    assert!(
        lookups <= bound,
        "{lookups} lookups for 1000 bogus keys (bound {bound})"
    );
    assert!(limited.len() >= 1000 - bound as usize, "{}", limited.len());
    let (_, headers, problem) = limited[0];
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["type"], "https://mirai.dev/problems/rate-limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");

    // Nobody else is affected: another address's key works, and so does a session token
    // from the blocked address (verified locally, no lookup).
    let other = answer(from("198.51.100.7", good_key.clone()).send().await.unwrap()).await;
    assert_eq!(other.0, 200, "{:?}", other.2);
    let session = gw
        .http
        .get(gw.url("/v1/me"))
        .header("x-forwarded-for", ATTACKER)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), 200);

    // The same bogus key again and again is looked up once: refusals are remembered.
    let before = rejected_key_rows(&gw).await;
    let repeated = bogus_key();
    for _ in 0..10 {
        let (status, _, _) =
            answer(from("198.51.100.8", repeated.clone()).send().await.unwrap()).await;
        assert_eq!(status, 401);
    }
    assert_eq!(rejected_key_rows(&gw).await - before, 1, "one lookup");
    gw.stop().await;
}

#[tokio::test]
async fn a_busy_api_key_writes_its_last_use_once_a_minute_not_per_request() {
    let gw = Gateway::start().await;
    let (_, access, _) = gw.sign_up("busy@example.com").await;
    let (key, key_id) = api_key(&gw, &access).await;
    let last_used = async || -> Option<chrono::DateTime<chrono::Utc>> {
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE api_key_id = $1::uuid")
            .bind(&key_id)
            .fetch_one(&gw.platform.services[0].pool)
            .await
            .unwrap()
    };
    let call = async || {
        let response = gw
            .http
            .get(gw.url("/v1/me"))
            .header("x-api-key", &key)
            .send()
            .await;
        assert_eq!(response.unwrap().status(), 200);
    };
    call().await;
    let first = last_used().await.expect("the first use is recorded");
    for _ in 0..20 {
        call().await;
    }
    assert_eq!(
        last_used().await,
        Some(first),
        "uses within a minute do not write again"
    );
    // A use a minute later is recorded.
    sqlx::query(
        "UPDATE api_keys SET last_used_at = last_used_at - interval '61 seconds'
          WHERE api_key_id = $1::uuid",
    )
    .bind(&key_id)
    .execute(&gw.platform.services[0].pool)
    .await
    .unwrap();
    call().await;
    assert!(last_used().await.unwrap() > first - chrono::TimeDelta::seconds(1));
    gw.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens the quote WebSocket as client `ip` (with a bearer token when given).
async fn socket(
    gw: &Gateway,
    ip: &str,
    token: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let url = gw.url("/v1/stream/quotes").replace("http://", "ws://");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", ip.parse().unwrap());
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    Ok(tokio_tungstenite::connect_async(request).await?.0)
}

/// The next text message as JSON, or the close frame's code as `{"closed": code}`.
async fn next(socket: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a message within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        match frame {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Close(frame) => {
                return json!({ "closed": frame.map(|f| u16::from(f.code)) });
            }
            _ => {}
        }
    }
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next message of `kind`, skipping others (quotes of the snapshot, say).
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = next(socket).await;
        if message["type"] == kind || message.get("closed").is_some() {
            return message;
        }
    }
}

#[tokio::test]
async fn ten_websockets_of_500_symbols_from_one_address_are_refused_beyond_the_limits() {
    let gw = gateway_with_sample(|config| {
        config.trusted_proxy_hops = 1;
        config.streams.per_ip = 4;
        config.streams.symbols = 100;
        config.streams.subscribe_rate = "5/1m".parse().unwrap();
    })
    .await;
    let admin = gw.admin_token().await;

    // Another client follows SPX before and throughout the attack.
    let mut victim = socket(&gw, "198.51.100.20", None).await.unwrap();
    send(
        &mut victim,
        json!({ "action": "subscribe", "symbols": ["SPX"] }),
    )
    .await;
    assert_eq!(
        next(&mut victim).await,
        json!({ "type": "subscribed", "symbols": ["SPX"] })
    );
    let snapshot = next(&mut victim).await;
    assert_eq!(snapshot["snapshot"], true, "{snapshot}");

    // Ten sockets from one address: four open, six are refused before the upgrade.
    let mut opened = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        match socket(&gw, ATTACKER, None).await {
            Ok(socket) => opened.push(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 429);
                assert_eq!(
                    response.headers()["content-type"],
                    "application/problem+json"
                );
                let problem: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert_eq!(
                    problem["type"],
                    "https://mirai.dev/problems/too-many-streams"
                );
                refused += 1;
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!((opened.len(), refused), (4, 6));

    // 500 symbols on one socket: refused whole, the socket stays open.
    let many: Vec<String> = std::iter::once("SPX".to_owned())
        .chain((1..500).map(|i| format!("X{i:03}")))
        .collect();
    for attacker in &mut opened {
        send(attacker, json!({ "action": "subscribe", "symbols": many })).await;
        let error = next(attacker).await;
        assert_eq!(error["code"], "too_many_symbols", "{error}");
        send(
            attacker,
            json!({ "action": "subscribe", "symbols": ["SPX"] }),
        )
        .await;
        assert_eq!(
            next_of(attacker, "subscribed").await,
            json!({ "type": "subscribed", "symbols": ["SPX"] })
        );
    }
    // Subscribe messages are rate-limited per socket (5 per minute; two spent above).
    let attacker = &mut opened[0];
    for _ in 0..3 {
        send(
            attacker,
            json!({ "action": "unsubscribe", "symbols": ["NONE"] }),
        )
        .await;
        assert_eq!(next_of(attacker, "subscribed").await["type"], "subscribed");
    }
    send(
        attacker,
        json!({ "action": "subscribe", "symbols": ["SPX"] }),
    )
    .await;
    let limited = next_of(attacker, "error").await;
    assert_eq!(limited["code"], "rate_limited", "{limited}");

    // The victim's quotes keep flowing: a replay reaches it (and the attackers, through the
    // one shared upstream stream).
    let (status, _, replay) = gw
        .post(
            "/v1/admin/replays",
            Some(&admin),
            json!({ "symbol": "SPX", "to": "2000-01-05T00:00:00Z", "bars_per_second": 100 }),
        )
        .await;
    assert_eq!(status, 201, "{replay}");
    let live = next_of(&mut victim, "quote").await;
    assert_eq!(live["snapshot"], false, "{live}");
    assert_eq!(live["source"], "replay", "{live}");

    // Closing a socket frees its place.
    let mut closing = opened.pop().unwrap();
    closing.close(None).await.unwrap();
    while closing.next().await.is_some() {}
    let mut again = None;
    for _ in 0..50 {
        if let Ok(socket) = socket(&gw, ATTACKER, None).await {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a closed socket's place is free again");
    gw.stop().await;
}

#[tokio::test]
async fn a_stream_closes_when_its_access_token_expires() {
    let gw = gateway_with_sample(|_| {}).await;
    let (user_id, access, _) = gw.sign_up("short-lived@example.com").await;
    // A token of the user service's own key that expires in 2 s.
    let kid = jsonwebtoken::decode_header(&access).unwrap().kid.unwrap();
    let pem = std::fs::read(gw.platform.keys_dir.join("current.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid);
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "https://mirai.local", "aud": "mirai-api", "sub": user_id,
        "iat": now, "nbf": now, "exp": now + 2, "jti": "short", "roles": ["user"]
    });
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap();

    let mut ws = socket(&gw, "198.51.100.30", Some(&token)).await.unwrap();
    send(
        &mut ws,
        json!({ "action": "subscribe", "symbols": ["SPX"] }),
    )
    .await;
    assert_eq!(
        next_of(&mut ws, "subscribed").await["symbols"],
        json!(["SPX"])
    );
    let error = next_of(&mut ws, "error").await;
    assert_eq!(error["code"], "token_expired", "{error}");
    assert_eq!(next(&mut ws).await, json!({ "closed": 4001 }));

    // SSE too, quotes and notifications: the stream ends with an error event.
    for (path, jti) in [
        ("/v1/stream/quotes?symbols=SPX", "short2"),
        ("/v1/stream/notifications", "short3"),
    ] {
        let claims = json!({
            "iss": "https://mirai.local", "aud": "mirai-api", "sub": claims["sub"],
            "iat": now, "nbf": now, "exp": chrono::Utc::now().timestamp() + 2, "jti": jti,
            "roles": ["user"]
        });
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_pem(&pem).unwrap())
                .unwrap();
        let response = gw
            .http
            .get(gw.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body = tokio::time::timeout(Duration::from_secs(10), response.text())
            .await
            .unwrap_or_else(|_| panic!("{path} ends by itself"))
            .unwrap();
        assert!(
            body.contains("event: error") && body.contains("token_expired"),
            "{path}: {body}"
        );
    }
    gw.stop().await;
}
