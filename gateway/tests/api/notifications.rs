//! The notification routes no other test gets a success from: push devices, one webhook
//! endpoint read, changed and deleted, the delivery log and a resend, renaming an alert, and
//! email verification end to end through a small in-test SMTP server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

use crate::helpers::{Gateway, Platform, eventually, patch, send};

async fn delete(gw: &Gateway, path: &str, token: &str) -> u16 {
    send(gw.http.delete(gw.url(path)).bearer_auth(token))
        .await
        .0
}

fn assert_problem(status: u16, headers: &reqwest::header::HeaderMap, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{body}"
    );
    assert_eq!(body["status"], want, "{body}");
}

#[tokio::test]
async fn push_devices_are_registered_listed_and_removed_per_owner() {
    let gw = Gateway::start().await;
    let (_, token, _) = gw.sign_up("dee@example.com").await;
    let (_, other, _) = gw.sign_up("eli@example.com").await;

    let (status, _, list) = gw.get("/v1/push-devices", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list, json!({ "devices": [] }));

    let fcm_token = "fcm-registration-token-0123456789-ABCDEFGH";
    let (status, _, device) = gw
        .post(
            "/v1/push-devices",
            Some(&token),
            json!({ "token": fcm_token, "platform": "android", "name": "Pixel" }),
        )
        .await;
    assert_eq!(status, 200, "{device}");
    let device_id = device["push_device_id"].as_str().unwrap().to_owned();
    assert!(!device_id.is_empty(), "{device}");
    assert_eq!(device["platform"], "android", "{device}");
    assert_eq!(device["name"], "Pixel", "{device}");
    assert_eq!(
        device["token_suffix"], "ABCDEFGH",
        "only the last 8: {device}"
    );
    assert!(device.get("token").is_none(), "{device}");
    assert!(device["created_at"].is_string(), "{device}");

    // Idempotent per token for its owner.
    let (status, _, again) = gw
        .post(
            "/v1/push-devices",
            Some(&token),
            json!({ "token": fcm_token, "platform": "android", "name": "Pixel" }),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["push_device_id"], device_id, "{again}");

    // Another account cannot take the token over, nor remove the device.
    let (status, headers, problem) = gw
        .post(
            "/v1/push-devices",
            Some(&other),
            json!({ "token": fcm_token, "platform": "ios" }),
        )
        .await;
    assert_problem(status, &headers, &problem, 409);
    let (status, headers, problem) = gw
        .post(
            "/v1/push-devices",
            Some(&token),
            json!({ "token": "t", "platform": "blackberry" }),
        )
        .await;
    assert!(matches!(status, 400 | 422), "{status} {problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(
        delete(&gw, &format!("/v1/push-devices/{device_id}"), &other).await,
        204
    );
    assert_eq!(
        gw.get("/v1/push-devices", Some(&other)).await.2,
        json!({ "devices": [] })
    );

    let (status, _, list) = gw.get("/v1/push-devices", Some(&token)).await;
    assert_eq!(status, 200, "{list}");
    let devices = list["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{list}");
    assert_eq!(devices[0]["push_device_id"], device_id, "{list}");
    assert_eq!(devices[0]["token_suffix"], "ABCDEFGH", "{list}");

    assert_eq!(
        delete(&gw, &format!("/v1/push-devices/{device_id}"), &token).await,
        204
    );
    assert_eq!(
        gw.get("/v1/push-devices", Some(&token)).await.2,
        json!({ "devices": [] })
    );
    // Idempotent.
    assert_eq!(
        delete(&gw, &format!("/v1/push-devices/{device_id}"), &token).await,
        204
    );

    // Without SMTP there is no verification mail to send.
    let (status, headers, problem) = gw
        .post("/v1/notification-email/resend", Some(&token), json!({}))
        .await;
    assert_problem(status, &headers, &problem, 409);
    gw.stop().await;
}

#[tokio::test]
async fn a_webhook_endpoint_is_read_changed_and_deleted() {
    let gw = Gateway::start().await;
    let (_, token, _) = gw.sign_up("fay@example.com").await;
    let (_, other, _) = gw.sign_up("gus@example.com").await;
    let (status, _, created) = gw
        .post(
            "/v1/webhooks",
            Some(&token),
            json!({ "url": "https://hooks.example.com/mirai", "description": "first",
                    "categories": ["price_alert"] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["endpoint"]["webhook_endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/webhooks/{id}");

    let (status, _, endpoint) = gw.get(&path, Some(&token)).await;
    assert_eq!(status, 200, "{endpoint}");
    assert_eq!(endpoint["webhook_endpoint_id"], id);
    assert_eq!(endpoint["url"], "https://hooks.example.com/mirai");
    assert_eq!(endpoint["description"], "first");
    assert_eq!(endpoint["categories"], json!(["price_alert"]));
    assert_eq!(endpoint["enabled"], true);
    assert_eq!(endpoint["status"], "enabled");
    assert!(endpoint.get("secret").is_none(), "{endpoint}");

    let (status, _, changed) = patch(
        &gw,
        &path,
        &token,
        json!({ "description": "second", "categories": ["price_alert", "report"],
                "enabled": false }),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["description"], "second", "{changed}");
    assert_eq!(changed["categories"], json!(["price_alert", "report"]));
    assert_eq!(changed["enabled"], false, "{changed}");
    assert_eq!(changed["status"], "disabled", "{changed}");
    assert_eq!(
        changed["url"], "https://hooks.example.com/mirai",
        "untouched"
    );
    let (_, _, endpoint) = gw.get(&path, Some(&token)).await;
    assert_eq!(endpoint["description"], "second", "{endpoint}");
    assert_eq!(endpoint["enabled"], false, "{endpoint}");

    // A private target is refused on change too, and the endpoint stays as it was.
    let (status, headers, problem) = patch(
        &gw,
        &path,
        &token,
        json!({ "url": "https://10.0.0.1/hook" }),
    )
    .await;
    assert_problem(status, &headers, &problem, 400);
    assert_eq!(
        gw.get(&path, Some(&token)).await.2["url"],
        "https://hooks.example.com/mirai"
    );

    // Someone else neither sees nor changes it; deleting it is a no-op for them.
    let (status, headers, problem) = gw.get(&path, Some(&other)).await;
    assert_problem(status, &headers, &problem, 404);
    let (status, headers, problem) =
        patch(&gw, &path, &other, json!({ "description": "mine" })).await;
    assert_problem(status, &headers, &problem, 404);
    assert_eq!(delete(&gw, &path, &other).await, 204);
    assert_eq!(gw.get(&path, Some(&token)).await.2["description"], "second");

    assert_eq!(delete(&gw, &path, &token).await, 204);
    let (status, headers, problem) = gw.get(&path, Some(&token)).await;
    assert_problem(status, &headers, &problem, 404);
    assert_eq!(
        gw.get("/v1/webhooks", Some(&token)).await.2["endpoints"],
        json!([])
    );
    assert_eq!(delete(&gw, &path, &token).await, 204, "idempotent");
    gw.stop().await;
}

/// Lists `symbol` and imports flat bars at 10 then 12 (as `alerts.rs` does).
async fn symbol_with_bars(gw: &Gateway, admin: &str, symbol: &str) {
    crate::alerts::list_symbol(gw, admin, symbol).await;
    let csv = "timestamp,open,high,low,close,volume\n2024-01-02,10,10,10,10,100\n2024-01-03,12,12,12,12,100\n";
    let (status, _, report) = send(
        gw.http
            .post(gw.url(&format!("/v1/admin/bars/import?symbol={symbol}")))
            .bearer_auth(admin)
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await;
    assert_eq!(status, 200, "{report}");
}

#[tokio::test]
async fn an_alert_is_renamed_and_its_push_delivery_is_logged_and_resent() {
    let gw = Gateway::start().await;
    let admin = gw.admin_token().await;
    symbol_with_bars(&gw, &admin, "PUSH").await;
    let (_, token, _) = gw.sign_up("hal@example.com").await;
    let (_, other, _) = gw.sign_up("ivy@example.com").await;
    let (status, _, device) = gw
        .post(
            "/v1/push-devices",
            Some(&token),
            json!({ "token": "fcm-token-for-the-alert-test-12345678", "platform": "web" }),
        )
        .await;
    assert_eq!(status, 200, "{device}");
    let device_id = device["push_device_id"].as_str().unwrap().to_owned();

    let (status, _, created) = gw
        .post(
            "/v1/alerts",
            Some(&token),
            json!({ "symbol": "PUSH", "name": "before",
                    "condition": { "kind": "crossing_up", "level": 11.0 },
                    "channels": ["in_app", "push"] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let alert_id = created["alert_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/alerts/{alert_id}");
    eventually("the alert to become active", json!("active"), async || {
        gw.get(&path, Some(&token)).await.2["status"].clone()
    })
    .await;

    let (status, _, renamed) = patch(&gw, &path, &token, json!({ "name": "after" })).await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "after", "{renamed}");
    assert_eq!(renamed["alert_id"], alert_id);
    assert_eq!(renamed["condition"]["level"], 11.0, "untouched: {renamed}");
    assert_eq!(gw.get(&path, Some(&token)).await.2["name"], "after");
    let (status, headers, problem) = patch(
        &gw,
        &path,
        &token,
        json!({ "condition": { "kind": "above" } }),
    )
    .await;
    assert!(matches!(status, 400 | 422), "{status} {problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, headers, problem) = patch(&gw, &path, &other, json!({ "name": "mine" })).await;
    assert_problem(status, &headers, &problem, 404);
    assert_eq!(gw.get(&path, Some(&token)).await.2["name"], "after");

    // Fire it: 10 arms the crossing, 12 crosses 11.
    let (status, _, replay) = gw
        .post(
            "/v1/admin/replays",
            Some(&admin),
            json!({ "symbol": "PUSH", "bars_per_second": 100 }),
        )
        .await;
    assert_eq!(status, 201, "{replay}");
    // Push is not configured in the test platform: the delivery fails visibly.
    eventually("the push delivery to fail", json!("failed"), async || {
        gw.get("/v1/deliveries?channel=push", Some(&token)).await.2["deliveries"][0]["status"]
            .clone()
    })
    .await;
    let (status, _, log) = gw.get("/v1/deliveries?channel=push", Some(&token)).await;
    assert_eq!(status, 200, "{log}");
    let pushed = &log["deliveries"].as_array().unwrap();
    assert_eq!(pushed.len(), 1, "{log}");
    let original = &pushed[0];
    assert_eq!(original["channel"], "push", "{log}");
    assert_eq!(original["target"], device_id, "{log}");
    let attempts = original["attempts"].as_array().unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a["error"].as_str().unwrap_or("").contains("not configured")),
        "{log}"
    );
    let delivery_id = original["delivery_id"].as_str().unwrap().to_owned();
    let notification_id = original["notification_id"].as_str().unwrap().to_owned();
    // The whole log also has the in-app copy of the same notification.
    let (status, _, all) = gw
        .get(
            &format!("/v1/deliveries?notification_id={notification_id}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{all}");
    let mut channels: Vec<&str> = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    channels.sort_unstable();
    assert_eq!(channels, ["in_app", "push"], "{all}");
    let (_, _, failed) = gw.get("/v1/deliveries?status=failed", Some(&token)).await;
    assert!(
        failed["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["delivery_id"] == delivery_id.as_str()),
        "{failed}"
    );
    assert_eq!(
        gw.get("/v1/deliveries", Some(&other)).await.2["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["channel"] == "push")
            .count(),
        0,
        "another account's log has none of it"
    );

    let (status, _, resent) = gw
        .post(
            &format!("/v1/deliveries/{delivery_id}/resend"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{resent}");
    assert_eq!(resent["resend_of"], delivery_id, "{resent}");
    assert_eq!(resent["notification_id"], notification_id, "{resent}");
    assert_eq!(resent["target"], device_id, "{resent}");
    assert_eq!(resent["channel"], "push", "{resent}");
    assert_eq!(resent["status"], "queued", "{resent}");
    assert_ne!(resent["delivery_id"], delivery_id);
    eventually("the log to hold the resend too", 2, async || {
        gw.get("/v1/deliveries?channel=push", Some(&token)).await.2["deliveries"]
            .as_array()
            .map_or(0, Vec::len)
    })
    .await;

    // In-app copies are stored, not sent; others' deliveries are not found.
    let in_app = all["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "in_app")
        .unwrap()["delivery_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, headers, problem) = gw
        .post(
            &format!("/v1/deliveries/{in_app}/resend"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_problem(status, &headers, &problem, 409);
    let (status, headers, problem) = gw
        .post(
            &format!("/v1/deliveries/{delivery_id}/resend"),
            Some(&other),
            json!({}),
        )
        .await;
    assert_problem(status, &headers, &problem, 404);
    gw.stop().await;
}

/// A received mail: its recipients and its data.
type Mail = (Vec<String>, String);

/// A minimal SMTP server on a free loopback port: answers every command, records each
/// message's recipients and data (dot-stuffing undone, lines joined with `\n`).
struct SmtpServer {
    port: u16,
    messages: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let messages = messages.clone();
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(Self::session(stream, messages.clone()));
                }
            }
        });
        Self {
            port,
            messages,
            task,
        }
    }

    async fn session(stream: tokio::net::TcpStream, messages: Arc<Mutex<Vec<Mail>>>) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 test ESMTP\r\n").await;
        let (mut recipients, mut data) = (Vec::new(), None::<String>);
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(body) = &mut data {
                if line == "." {
                    let body = data.take().unwrap();
                    messages
                        .lock()
                        .unwrap()
                        .push((std::mem::take(&mut recipients), body));
                    let _ = write.write_all(b"250 queued\r\n").await;
                } else {
                    body.push_str(line.strip_prefix('.').unwrap_or(&line));
                    body.push('\n');
                }
                continue;
            }
            let verb = line
                .split([' ', ':'])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" | "HELO" => b"250 test\r\n",
                "RCPT" => {
                    let to = line.split(['<', '>']).nth(1).unwrap_or("").to_owned();
                    recipients.push(to);
                    b"250 OK\r\n"
                }
                "DATA" => {
                    data = Some(String::new());
                    b"354 end with .\r\n"
                }
                "QUIT" => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => b"250 OK\r\n",
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    fn config(&self) -> mirai_notification::config::SmtpConfig {
        mirai_notification::config::SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: mirai_notification::config::SmtpTls::None,
            credentials: None,
            from: "MiraiKakaku <alerts@mirai.test>".into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// The token of the verification link in the `n`th message (waiting for it), and its
    /// recipients.
    async fn link_token(&self, n: usize) -> (Vec<String>, String) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let (to, data) = loop {
            if let Some(m) = self.messages.lock().unwrap().get(n).cloned() {
                break m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message {n} at the SMTP server"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Quoted-printable: join soft line breaks, decode the escaped '='.
        let text = data.replace("=\n", "").replace("=3D", "=");
        let start = text.find("token=").expect("a verification link") + "token=".len();
        let token = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        (to, token)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn email_addresses_are_verified_with_the_link_sent_over_smtp() {
    let smtp = SmtpServer::start().await;
    let mut platform = Platform::start().await;
    let smtp_config = smtp.config();
    platform
        .restart(4, move |config| async move {
            let mut config = mirai_notification::config::Config::with_service(config);
            config.smtp = Some(smtp_config);
            mirai_notification::startup::build_with(&config)
                .await
                .map(|built| built.service)
        })
        .await;
    let gw = Gateway::start_on(platform, |_| {}).await;
    let (user_id, token, _) = gw.sign_up("jo@example.com").await;
    eventually(
        "the notification service to know the account",
        Some("jo@example.com".to_owned()),
        async || {
            sqlx::query_scalar::<_, String>("SELECT email FROM users WHERE user_id = $1::uuid")
                .bind(&user_id)
                .fetch_optional(&gw.platform.services[4].pool)
                .await
                .unwrap()
        },
    )
    .await;

    let (status, _, sent) = gw
        .post("/v1/notification-email/resend", Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent, json!({ "sent_to": ["jo@example.com"] }));
    let (to, link) = smtp.link_token(0).await;
    assert_eq!(to, ["jo@example.com"]);

    // The link works signed out, once.
    let (status, headers, problem) = gw
        .get("/v1/notification-email/confirm?token=not-a-token", None)
        .await;
    assert_problem(status, &headers, &problem, 400);
    let confirm = format!("/v1/notification-email/confirm?token={link}");
    let (status, _, confirmed) = gw.get(&confirm, None).await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(
        confirmed,
        json!({ "email": "jo@example.com", "verified": true })
    );
    let (status, headers, problem) = gw.get(&confirm, None).await;
    assert_problem(status, &headers, &problem, 409);
    let (_, _, sent) = gw
        .post("/v1/notification-email/resend", Some(&token), json!({}))
        .await;
    assert_eq!(sent, json!({ "sent_to": [] }), "already verified");

    // A second address, from the preferences, confirmed by POSTing the token.
    let (status, _, prefs) = patch(
        &gw,
        "/v1/notification-preferences",
        &token,
        json!({ "email": "jo.alerts@example.com" }),
    )
    .await;
    assert_eq!(status, 200, "{prefs}");
    let (status, _, sent) = gw
        .post("/v1/notification-email/resend", Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent, json!({ "sent_to": ["jo.alerts@example.com"] }));
    // The change itself mailed a link (message 1); the resend's (message 2) replaced it.
    let (to, stale) = smtp.link_token(1).await;
    assert_eq!(to, ["jo.alerts@example.com"]);
    let (to, link) = smtp.link_token(2).await;
    assert_eq!(to, ["jo.alerts@example.com"]);
    let (status, headers, problem) = gw
        .post(
            "/v1/notification-email/confirm",
            None,
            json!({ "token": stale }),
        )
        .await;
    assert_problem(status, &headers, &problem, 409);
    let (status, headers, problem) = gw
        .post(
            "/v1/notification-email/confirm",
            None,
            json!({ "token": format!("{link}x") }),
        )
        .await;
    assert_problem(status, &headers, &problem, 400);
    let (status, _, confirmed) = gw
        .post(
            "/v1/notification-email/confirm",
            None,
            json!({ "token": link }),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(
        confirmed,
        json!({ "email": "jo.alerts@example.com", "verified": true })
    );
    let (status, headers, problem) = gw
        .post(
            "/v1/notification-email/confirm",
            None,
            json!({ "token": link }),
        )
        .await;
    assert_problem(status, &headers, &problem, 409);
    gw.stop().await;
}
