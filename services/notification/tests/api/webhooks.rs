//! Webhooks: Standard Webhooks signatures checked by the reference library, retries, the
//! delivery log, auto-disable, resend, secret rotation and SSRF refusals.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use mirai_proto::notification::v1 as pb;
use pb::condition::Kind;
use uuid::Uuid;

use crate::helpers::{
    HUGE_BODY, HugeBody, Receiver, TestApp, alert, eventually, level, py_dir, python, spawn_with,
    user,
};

pub async fn endpoint(app: &mut TestApp, owner: Uuid, url: &str) -> (pb::WebhookEndpoint, String) {
    let created = app
        .client
        .create_webhook_endpoint(user(
            owner,
            pb::CreateWebhookEndpointRequest {
                user_id: owner.to_string(),
                endpoint: Some(pb::WebhookEndpoint {
                    url: url.to_owned(),
                    description: "test receiver".into(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (created.endpoint.unwrap(), created.secret)
}

/// Fires one new "above 10" alert of `owner` on `symbol` delivered on `channels`.
pub async fn fire(
    app: &mut TestApp,
    owner: Uuid,
    symbol: &str,
    channels: &[pb::Channel],
) -> pb::Alert {
    let created = app
        .create_alert(owner, alert(symbol, level(Kind::Above, 10.0), channels))
        .await;
    app.confirm(owner, &created).await;
    app.price(symbol, 11.0).await;
    let id = created.alert_id.clone();
    eventually("the alert to fire", || async {
        (app.trigger_count(&id).await == 1).then_some(())
    })
    .await;
    created
}

async fn settled(app: &mut TestApp, owner: Uuid, endpoint: &str, n: usize) -> Vec<pb::Delivery> {
    let client = app.client.clone();
    eventually("the deliveries to settle", || {
        let mut client = client.clone();
        async move {
            let list = client
                .list_deliveries(user(
                    owner,
                    pb::ListDeliveriesRequest {
                        user_id: owner.to_string(),
                        webhook_endpoint_id: endpoint.to_owned(),
                        ..Default::default()
                    },
                ))
                .await
                .ok()?
                .into_inner()
                .deliveries;
            let done = |d: &pb::Delivery| {
                d.status == pb::DeliveryStatus::Delivered as i32
                    || d.status == pb::DeliveryStatus::Failed as i32
            };
            (list.len() >= n && list.iter().all(done)).then_some(list)
        }
    })
    .await
}

/// Asks the `standardwebhooks` library whether each request verifies with each secret.
fn verify(secrets: &[&str], requests: &[crate::helpers::Received]) -> Vec<Vec<bool>> {
    let job = serde_json::json!({
        "secrets": secrets,
        "requests": requests.iter().map(|r| serde_json::json!({
            "headers": r.headers,
            "body": r.body,
        })).collect::<Vec<_>>(),
    });
    let mut child = Command::new(python())
        .arg(py_dir().join("verify_webhook.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(job.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(answer["results"].clone()).unwrap()
}

#[tokio::test]
async fn signatures_verify_with_the_reference_library_and_rotation_signs_with_both_secrets() {
    let mut app = spawn_with(|_| {}).await;
    let receiver = Receiver::start(&[]).await;
    let owner = app.add_user("w@example.com", "UTC", &["user"]).await;
    let (ep, first_secret) = endpoint(&mut app, owner, &receiver.url).await;
    assert!(first_secret.starts_with("whsec_"));
    fire(&mut app, owner, "SIG", &[pb::Channel::Webhook]).await;
    eventually("the first webhook", || async {
        (receiver.requests().len() == 1).then_some(())
    })
    .await;
    let rotated = app
        .client
        .rotate_webhook_secret(user(
            owner,
            pb::RotateWebhookSecretRequest {
                user_id: owner.to_string(),
                webhook_endpoint_id: ep.webhook_endpoint_id.clone(),
                overlap: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        rotated
            .endpoint
            .unwrap()
            .previous_secret_expires_at
            .is_some()
    );
    fire(&mut app, owner, "SIG", &[pb::Channel::Webhook]).await;
    eventually("the second webhook", || async {
        (receiver.requests().len() == 2).then_some(())
    })
    .await;
    let requests = receiver.requests();
    let body: serde_json::Value = serde_json::from_str(&requests[0].body).unwrap();
    assert_eq!(body["type"], "alert.triggered");
    assert_eq!(body["data"]["symbol"], "SIG");
    assert_eq!(
        requests[1].headers["webhook-signature"].split(' ').count(),
        2,
        "both secrets sign during the overlap"
    );
    let bogus = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let results = verify(&[&first_secret, &rotated.secret, bogus], &requests);
    assert_eq!(results[0], [true, false, false]);
    assert_eq!(results[1], [true, true, false]);
    // A tampered body fails.
    let mut tampered = requests[0].clone();
    tampered.body = tampered.body.replace("SIG", "SIH");
    assert_eq!(verify(&[&first_secret], &[tampered]), [[false]]);
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_then_succeeds_and_every_attempt_is_logged() {
    let mut app = spawn_with(|_| {}).await;
    let receiver = Receiver::start(&[500, 503]).await;
    let owner = app.add_user("r@example.com", "UTC", &["user"]).await;
    let (ep, _) = endpoint(&mut app, owner, &receiver.url).await;
    fire(&mut app, owner, "RTY", &[pb::Channel::Webhook]).await;
    let list = settled(&mut app, owner, &ep.webhook_endpoint_id, 1).await;
    let d = &list[0];
    assert_eq!(d.status, pb::DeliveryStatus::Delivered as i32, "{d:?}");
    let outcomes: Vec<(i32, i32)> = d
        .attempts
        .iter()
        .map(|a| (a.outcome, a.response_code))
        .collect();
    assert_eq!(
        outcomes,
        [
            (pb::AttemptOutcome::Failed as i32, 500),
            (pb::AttemptOutcome::Failed as i32, 503),
            (pb::AttemptOutcome::Succeeded as i32, 200),
        ]
    );
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.headers["webhook-id"].clone())
        .collect();
    assert_eq!(
        ids,
        vec![d.delivery_id.clone(); 3],
        "the webhook-id is stable across retries"
    );
    let endpoint = app
        .client
        .get_webhook_endpoint(user(
            owner,
            pb::GetWebhookEndpointRequest {
                user_id: owner.to_string(),
                webhook_endpoint_id: ep.webhook_endpoint_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert!(
        endpoint.failing_since.is_none(),
        "a success clears the failure run"
    );
}

#[tokio::test]
async fn a_dead_endpoint_is_disabled_and_a_failed_delivery_can_be_resent() {
    let mut app = spawn_with(|c| {
        c.deliveries.retry_schedule = vec![
            Duration::ZERO,
            Duration::from_millis(400),
            Duration::from_millis(400),
        ];
        c.webhooks.disable_after = Duration::from_millis(600);
    })
    .await;
    let receiver = Receiver::start(&[]).await;
    receiver.answer_always(502);
    let owner = app.add_user("dead@example.com", "UTC", &["user"]).await;
    let (ep, _) = endpoint(&mut app, owner, &receiver.url).await;
    fire(&mut app, owner, "DED", &[pb::Channel::Webhook]).await;
    let list = settled(&mut app, owner, &ep.webhook_endpoint_id, 1).await;
    assert_eq!(list[0].status, pb::DeliveryStatus::Failed as i32);
    assert_eq!(
        list[0].attempts.len(),
        3,
        "every scheduled attempt was made"
    );
    let get = pb::GetWebhookEndpointRequest {
        user_id: owner.to_string(),
        webhook_endpoint_id: ep.webhook_endpoint_id.clone(),
    };
    let disabled = app
        .client
        .get_webhook_endpoint(user(owner, get.clone()))
        .await
        .unwrap()
        .into_inner()
        .endpoint
        .unwrap();
    assert_eq!(disabled.status, pb::EndpointStatus::DisabledFailing as i32);
    assert!(
        disabled.disabled_reason.contains("HTTP 502"),
        "{}",
        disabled.disabled_reason
    );
    // Resending to a disabled endpoint is refused until it is enabled again.
    let resend = pb::ResendDeliveryRequest {
        user_id: owner.to_string(),
        delivery_id: list[0].delivery_id.clone(),
    };
    let err = app
        .client
        .resend_delivery(user(owner, resend.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    app.client
        .update_webhook_endpoint(user(
            owner,
            pb::UpdateWebhookEndpointRequest {
                user_id: owner.to_string(),
                endpoint: Some(pb::WebhookEndpoint {
                    webhook_endpoint_id: ep.webhook_endpoint_id.clone(),
                    enabled: Some(true),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["enabled".into()],
                }),
            },
        ))
        .await
        .unwrap();
    receiver.answer_always(204);
    let again = app
        .client
        .resend_delivery(user(owner, resend))
        .await
        .unwrap()
        .into_inner()
        .delivery
        .unwrap();
    assert_eq!(again.resend_of, list[0].delivery_id);
    let list = settled(&mut app, owner, &ep.webhook_endpoint_id, 2).await;
    let resent = list
        .iter()
        .find(|d| d.delivery_id == again.delivery_id)
        .unwrap();
    assert_eq!(resent.status, pb::DeliveryStatus::Delivered as i32);
    let failed = list
        .iter()
        .find(|d| d.delivery_id == again.resend_of)
        .unwrap();
    assert_eq!(
        failed.status,
        pb::DeliveryStatus::Failed as i32,
        "the original stays in the log"
    );
}

#[tokio::test]
async fn ssrf_targets_are_refused_at_registration_and_blocked_at_delivery() {
    let mut app = spawn_with(|c| c.webhooks.allow_private_targets = false).await;
    let owner = app.add_user("ssrf@example.com", "UTC", &["user"]).await;
    for url in [
        "http://hooks.example.com/plain-http",
        "https://127.0.0.1/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/internal",
        "https://localhost:8443/hook",
        "https://user:secret@hooks.example.com/",
    ] {
        let err = app
            .client
            .create_webhook_endpoint(user(
                owner,
                pb::CreateWebhookEndpointRequest {
                    user_id: owner.to_string(),
                    endpoint: Some(pb::WebhookEndpoint {
                        url: url.into(),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{url}");
        assert!(
            err.message().starts_with("endpoint.url"),
            "{url}: {}",
            err.message()
        );
    }
    // An endpoint whose name points at loopback by the time it is used is blocked, not called.
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO webhook_endpoints (webhook_endpoint_id, user_id, url, secret)
         VALUES ($1, $2, 'https://localhost:1/hook', $3)",
    )
    .bind(id)
    .bind(owner)
    .bind(mirai_notification::store::endpoints::new_secret())
    .execute(&app.pool)
    .await
    .unwrap();
    fire(&mut app, owner, "SSRF", &[pb::Channel::Webhook]).await;
    let list = settled(&mut app, owner, &id.to_string(), 1).await;
    assert_eq!(list[0].status, pb::DeliveryStatus::Failed as i32);
    assert_eq!(
        list[0].attempts.len(),
        1,
        "no retries of a forbidden target"
    );
    assert_eq!(
        list[0].attempts[0].outcome,
        pb::AttemptOutcome::Blocked as i32
    );
}

/// A receiver that answers every request `500` with a huge body.
struct HugeErrorReceiver {
    url: String,
    body: HugeBody,
}

impl HugeErrorReceiver {
    async fn start(size: usize) -> Self {
        let body = HugeBody::new(size);
        let b = body.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let b = b.clone();
                async move { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, b.body()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, body }
    }
}

#[tokio::test]
async fn a_huge_error_body_is_read_only_up_to_a_few_kib() {
    let mut app = spawn_with(|c| {
        // One attempt, and time enough to read all 50 MiB if the code tried to.
        c.deliveries.retry_schedule = vec![Duration::ZERO];
        c.webhooks.timeout = Duration::from_secs(30);
    })
    .await;
    let receiver = HugeErrorReceiver::start(HUGE_BODY).await;
    let owner = app.add_user("huge@example.com", "UTC", &["user"]).await;
    let (ep, _) = endpoint(&mut app, owner, &receiver.url).await;
    fire(&mut app, owner, "HUG", &[pb::Channel::Webhook]).await;
    let list = settled(&mut app, owner, &ep.webhook_endpoint_id, 1).await;
    let attempt = &list[0].attempts[0];
    assert_eq!(attempt.response_code, 500);
    assert!(
        attempt
            .error
            .starts_with("HTTP 500: upstream exploded: xxx"),
        "the excerpt is kept: {:?}",
        attempt.error.get(..60)
    );
    assert!(
        attempt.error.chars().count() <= 500,
        "attempt excerpt capped"
    );
    // What the delivery row keeps is bounded too (it held the whole body before).
    let stored: i32 = sqlx::query_scalar(
        "SELECT char_length(last_error) FROM deliveries WHERE delivery_id = $1::uuid",
    )
    .bind(&list[0].delivery_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        (1..=500).contains(&stored),
        "deliveries.last_error holds {stored} characters"
    );
    // The sender stopped reading: the receiver never got to hand over the whole body.
    receiver.body.assert_not_read_whole();
}

fn keyring(spec: &[(&str, u8)]) -> mirai_notification::secrets::Keyring {
    use base64::Engine as _;
    let spec: Vec<String> = spec
        .iter()
        .map(|(id, byte)| {
            format!(
                "{id}:{}",
                base64::engine::general_purpose::STANDARD.encode([*byte; 32])
            )
        })
        .collect();
    mirai_notification::secrets::Keyring::parse(&spec.join(",")).unwrap()
}

async fn stored_secret(pool: &sqlx::PgPool, endpoint: &str) -> String {
    sqlx::query_scalar("SELECT secret FROM webhook_endpoints WHERE webhook_endpoint_id = $1::uuid")
        .bind(endpoint)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_secrets_are_sealed_at_rest_and_survive_a_kek_rotation() {
    let mut app = spawn_with(|c| c.webhooks.secret_keys = Some(keyring(&[("k1", 1)]))).await;
    let owner = app.add_user("sealed@example.com", "UTC", &["user"]).await;
    let sealed_receiver = Receiver::start(&[]).await;
    let legacy_receiver = Receiver::start(&[]).await;
    let (sealed_ep, sealed_secret) = endpoint(&mut app, owner, &sealed_receiver.url).await;
    let (legacy_ep, _) = endpoint(&mut app, owner, &legacy_receiver.url).await;
    // At rest the secret is sealed under k1 (it was stored as given before).
    let at_rest = stored_secret(&app.pool, &sealed_ep.webhook_endpoint_id).await;
    assert!(at_rest.starts_with("v1:k1:"), "{at_rest}");
    assert!(!at_rest.contains(sealed_secret.trim_start_matches("whsec_")));
    // A row from before sealing holds its secret in the clear.
    let legacy_secret = "whsec_bGVnYWN5LXNlY3JldC1sZWdhY3ktc2VjcmV0IQ==";
    sqlx::query("UPDATE webhook_endpoints SET secret = $2 WHERE webhook_endpoint_id = $1::uuid")
        .bind(&legacy_ep.webhook_endpoint_id)
        .bind(legacy_secret)
        .execute(&app.pool)
        .await
        .unwrap();
    app.stop.cancel();

    // Rotation, step 1: the new KEK first, the old one still accepted. Starting rewraps every
    // data key under k2 and seals the clear secret.
    let mut rotating = app.config.clone();
    rotating.webhooks.secret_keys = Some(keyring(&[("k2", 2), ("k1", 1)]));
    let (_, pool, _, stop) = crate::helpers::replica(&rotating).await;
    for ep in [&sealed_ep, &legacy_ep] {
        let now = stored_secret(&pool, &ep.webhook_endpoint_id).await;
        assert!(now.starts_with("v1:k2:"), "{now}");
    }
    stop.cancel();
    // Step 2: k1 dropped. Deliveries are still signed with the users' secrets.
    let mut rotated = app.config.clone();
    rotated.webhooks.secret_keys = Some(keyring(&[("k2", 2)]));
    let (client, pool, context, stop) = crate::helpers::replica(&rotated).await;
    app.client = client;
    app.pool = pool;
    app.context = context;
    app.stop = stop;
    fire(&mut app, owner, "SEAL", &[pb::Channel::Webhook]).await;
    for (receiver, secret) in [
        (&sealed_receiver, sealed_secret.as_str()),
        (&legacy_receiver, legacy_secret),
    ] {
        let request = eventually("the signed delivery", || async {
            receiver.requests().into_iter().next()
        })
        .await;
        let expected = mirai_notification::deliver::webhook::sign(
            secret,
            &request.headers["webhook-id"],
            request.headers["webhook-timestamp"].parse().unwrap(),
            request.body.as_bytes(),
        )
        .unwrap();
        assert_eq!(request.headers["webhook-signature"], expected);
    }
}
