//! Push through the FCM HTTP v1 request format, against a local server that speaks it: the
//! OAuth 2.0 JWT-bearer token exchange (the assertion's RS256 signature is checked with the
//! service account's public key) and `messages:send`.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mirai_notification::config::FcmConfig;
use mirai_proto::notification::v1 as pb;

use crate::helpers::{HUGE_BODY, HUGE_BODY_START, HugeBody, TestApp, eventually, spawn_with, user};
use crate::webhooks::fire;

#[derive(Clone, Default)]
struct Fcm {
    public_pem: Arc<String>,
    client_email: Arc<String>,
    token_uri: Arc<Mutex<String>>,
    tokens_issued: Arc<Mutex<u32>>,
    messages: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    /// The error body for the token `flood-device-token`.
    huge: Option<HugeBody>,
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    scope: String,
    aud: String,
    exp: i64,
}

async fn token(
    State(fcm): State<Fcm>,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (StatusCode::BAD_REQUEST, "unsupported_grant_type").into_response();
    }
    let key = DecodingKey::from_rsa_pem(fcm.public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[fcm.token_uri.lock().unwrap().clone()]);
    let claims = match jsonwebtoken::decode::<Claims>(
        form.get("assertion").map_or("", |s| s),
        &key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid_grant: {e}")).into_response(),
    };
    if claims.iss != *fcm.client_email
        || claims.scope != "https://www.googleapis.com/auth/firebase.messaging"
        || claims.aud.is_empty()
        || claims.exp <= chrono::Utc::now().timestamp()
    {
        return (StatusCode::BAD_REQUEST, "invalid_grant").into_response();
    }
    *fcm.tokens_issued.lock().unwrap() += 1;
    axum::Json(serde_json::json!({
        "access_token": "ya29.test-token",
        "expires_in": 3599,
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn send(
    State(fcm): State<Fcm>,
    Path(project): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<serde_json::Value>,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer ya29.test-token")
    {
        return (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED").into_response();
    }
    let token = body["message"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if token == "flood-device-token"
        && let Some(huge) = &fcm.huge
    {
        return (StatusCode::INTERNAL_SERVER_ERROR, huge.body()).into_response();
    }
    if token == "gone-device-token" {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(
                serde_json::json!({"error": {"code": 404, "status": "NOT_FOUND",
                "details": [{"errorCode": "UNREGISTERED"}]}}),
            ),
        )
            .into_response();
    }
    fcm.messages.lock().unwrap().push((project.clone(), body));
    axum::Json(serde_json::json!({"name": format!("projects/{project}/messages/1")}))
        .into_response()
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is needed for the push test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A local FCM (token exchange and `messages:send`) with a fresh service-account key in
/// `dir`, and the configuration that points at it.
async fn fake_fcm(dir: &std::path::Path, huge: Option<HugeBody>) -> (Fcm, FcmConfig) {
    let key_path = dir.join("key.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_path.to_str().unwrap(),
    ]);
    let public_pem = String::from_utf8(openssl(&[
        "pkey",
        "-in",
        key_path.to_str().unwrap(),
        "-pubout",
    ]))
    .unwrap();
    let private_pem = std::fs::read_to_string(&key_path).unwrap();

    let fcm = Fcm {
        public_pem: Arc::new(public_pem),
        client_email: Arc::new("mirai-push@mirai-test.iam.gserviceaccount.com".into()),
        huge,
        ..Default::default()
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::post(token))
        .route(
            "/v1/projects/{project}/messages:send",
            axum::routing::post(send),
        )
        .with_state(fcm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let token_uri = format!("{base}/token");
    *fcm.token_uri.lock().unwrap() = token_uri.clone();
    let credentials = dir.join("service-account.json");
    std::fs::write(
        &credentials,
        serde_json::json!({
            "type": "service_account",
            "project_id": "mirai-test",
            "private_key_id": "k1",
            "private_key": private_pem,
            "client_email": *fcm.client_email,
            "token_uri": token_uri,
        })
        .to_string(),
    )
    .unwrap();

    let config = FcmConfig {
        credentials_file: credentials,
        endpoint: base,
        token_uri: None,
        timeout: Duration::from_secs(5),
    };
    (fcm, config)
}

async fn register(
    app: &TestApp,
    owner: uuid::Uuid,
    token: &str,
    name: &str,
) -> Result<pb::PushDevice, tonic::Status> {
    app.client
        .clone()
        .register_push_device(user(
            owner,
            pb::RegisterPushDeviceRequest {
                user_id: owner.to_string(),
                token: token.into(),
                platform: pb::DevicePlatform::Android.into(),
                name: name.into(),
            },
        ))
        .await
        .map(|r| r.into_inner().device.unwrap())
}

#[tokio::test]
async fn push_goes_through_the_fcm_v1_token_exchange_and_messages_send() {
    let dir = tempfile::tempdir().unwrap();
    let (fcm, fcm_config) = fake_fcm(dir.path(), None).await;
    let mut app = spawn_with(|c| c.fcm = Some(fcm_config)).await;
    let owner = app.add_user("push@example.com", "UTC", &["user"]).await;
    for (token, name) in [
        ("fcm-registration-token-0123456789", "Pixel 8"),
        ("gone-device-token", "old phone"),
    ] {
        register(&app, owner, token, name).await.unwrap();
    }
    fire(&mut app, owner, "PUSH", &[pb::Channel::Push]).await;
    let messages = eventually("the push message", || async {
        let m = fcm.messages.lock().unwrap().clone();
        (!m.is_empty()).then_some(m)
    })
    .await;
    let (project, body) = &messages[0];
    assert_eq!(project, "mirai-test");
    assert_eq!(
        body["message"]["token"],
        "fcm-registration-token-0123456789"
    );
    assert_eq!(body["message"]["notification"]["title"], "PUSH above 10.00");
    assert_eq!(body["message"]["data"]["symbol"], "PUSH");
    assert_eq!(*fcm.tokens_issued.lock().unwrap(), 1);
    // The unregistered device is removed; its delivery failed visibly.
    let devices = eventually("the unregistered device to be removed", || async {
        let d = app
            .client
            .clone()
            .list_push_devices(user(
                owner,
                pb::ListPushDevicesRequest {
                    user_id: owner.to_string(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .devices;
        (d.len() == 1).then_some(d)
    })
    .await;
    assert_eq!(devices[0].token_suffix, "23456789");
    // The device is removed before the attempt is recorded: wait for the record.
    let mut statuses = eventually("both push deliveries to be recorded", || async {
        let statuses: Vec<String> = app
            .deliveries_of(owner)
            .await
            .into_iter()
            .filter(|(c, ..)| *c == pb::Channel::Push as i16)
            .map(|(_, s, ..)| s)
            .collect();
        (!statuses.iter().any(|s| s == "QUEUED")).then_some(statuses)
    })
    .await;
    statuses.sort();
    assert_eq!(statuses, ["FAILED", "SENT"]);
}

#[tokio::test]
async fn a_huge_fcm_error_body_is_read_only_up_to_a_few_kib() {
    let dir = tempfile::tempdir().unwrap();
    let huge = HugeBody::new(HUGE_BODY);
    let (_fcm, fcm_config) = fake_fcm(dir.path(), Some(huge.clone())).await;
    let mut app = spawn_with(|c| {
        c.fcm = Some(FcmConfig {
            // Time enough to read all 50 MiB if the code tried to.
            timeout: Duration::from_secs(30),
            ..fcm_config
        });
        c.deliveries.retry_schedule = vec![Duration::ZERO];
    })
    .await;
    let owner = app.add_user("flood@example.com", "UTC", &["user"]).await;
    register(&app, owner, "flood-device-token", "flood")
        .await
        .unwrap();
    fire(&mut app, owner, "FLOOD", &[pb::Channel::Push]).await;
    let error: String = eventually("the push delivery to fail", || async {
        sqlx::query_scalar(
            "SELECT last_error FROM deliveries WHERE user_id = $1 AND channel = $2 AND status = 'FAILED'",
        )
        .bind(owner)
        .bind(pb::Channel::Push as i16)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
    })
    .await;
    assert!(
        error.starts_with(&format!("FCM HTTP 500: {HUGE_BODY_START}xxx")),
        "{:?}",
        error.get(..60)
    );
    huge.assert_not_read_whole();
}

#[tokio::test]
async fn push_devices_are_capped_and_a_token_is_never_moved_silently() {
    let app = spawn_with(|c| c.caps.push_devices = 3).await;
    let owner = app.add_user("phones@example.com", "UTC", &["user"]).await;
    let other = app.add_user("thief@example.com", "UTC", &["user"]).await;
    for i in 0..3 {
        register(&app, owner, &format!("owner-token-{i}"), "")
            .await
            .unwrap();
    }
    let refused = register(&app, owner, "owner-token-3", "")
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    // Registering a device again is idempotent and does not count twice.
    let again = register(&app, owner, "owner-token-0", "").await.unwrap();
    assert_eq!(again.user_id, owner.to_string());

    // Another account cannot take a registered token (it used to move silently).
    let taken = register(&app, other, "owner-token-1", "")
        .await
        .unwrap_err();
    assert_eq!(taken.code(), tonic::Code::FailedPrecondition, "{taken:?}");
    let holder: uuid::Uuid =
        sqlx::query_scalar("SELECT user_id FROM push_devices WHERE token = 'owner-token-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(holder, owner);

    // Concurrent registrations cannot pass the cap.
    let attempts = (0..10).map(|i| {
        let app = &app;
        async move { register(app, other, &format!("other-token-{i}"), "").await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
}
