//! Alerts and notifications over HTTP: the activation saga with the real stock-data service,
//! a replayed price firing an alert into the caller's SSE stream, and bad input as
//! problem+json.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::helpers::{Gateway, eventually, send};

/// Lists `symbol` on stock-data through the gateway (as an admin).
pub async fn list_symbol(gw: &Gateway, admin: &str, symbol: &str) {
    let (status, _, body) = gw
        .post(
            "/v1/symbols",
            Some(admin),
            json!({ "symbol": symbol, "name": format!("{symbol} Corp."), "exchange_mic": "XNAS",
                    "currency": "USD", "asset_type": "equity" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// An open `/v1/stream/notifications`: yields the `data` of each `notification` event.
struct NotificationStream {
    body: futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl NotificationStream {
    async fn open(gw: &Gateway, token: &str) -> Self {
        Self::resume(gw, token, None).await
    }

    /// Reconnects as `EventSource` does, with the last event's id.
    async fn resume(gw: &Gateway, token: &str, last_event_id: Option<&str>) -> Self {
        let mut request = gw
            .http
            .get(gw.url("/v1/stream/notifications"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: response
                .bytes_stream()
                .map(|c| c.map(|b| b.to_vec()))
                .boxed(),
            buffer: String::new(),
        }
    }

    /// The next notification, skipping the account's welcome message.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if event.lines().any(|l| l == "event: notification")
                    && let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: "))
                {
                    let notification: Value = serde_json::from_str(data).unwrap();
                    if notification["category"] == "account" {
                        continue;
                    }
                    return notification;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("a notification within 30 s")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn alert_status(gw: &Gateway, token: &str, alert_id: &str) -> Value {
    gw.get(&format!("/v1/alerts/{alert_id}"), Some(token))
        .await
        .2["status"]
        .clone()
}

#[tokio::test]
async fn an_alert_goes_live_when_stock_data_confirms_and_fires_into_the_notification_stream() {
    let gw = Gateway::start().await;
    let admin = gw.admin_token().await;
    list_symbol(&gw, &admin, "ACME").await;
    // Flat bars, so the replayed prices are exactly 10 then 12.
    let csv = "timestamp,open,high,low,close,volume\n2024-01-02,10,10,10,10,100\n2024-01-03,12,12,12,12,100\n";
    let (status, _, report) = send(
        gw.http
            .post(gw.url("/v1/admin/bars/import?symbol=ACME"))
            .bearer_auth(&admin)
            .header("content-type", "text/csv")
            .body(csv),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["rows_inserted"], 2, "{report}");
    let (_, token, _) = gw.sign_up("ana@example.com").await;
    let mut stream = NotificationStream::open(&gw, &token).await;

    let (status, headers, created) = gw
        .post(
            "/v1/alerts",
            Some(&token),
            json!({ "symbol": "ACME", "name": "breakout",
                    "condition": { "kind": "crossing_up", "level": 11.0 },
                    "message_template": "{{symbol}} broke out at {{price}}" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let alert_id = created["alert_id"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/v1/alerts/{alert_id}"));
    assert_eq!(created["status"], "pending", "{created}");
    assert_eq!(created["frequency"], "once");
    assert_eq!(created["channels"], json!(["in_app"]));
    assert_eq!(created["condition"]["level"], 11.0);

    eventually("the alert to become active", json!("active"), async || {
        alert_status(&gw, &token, &alert_id).await
    })
    .await;
    let told = stream.next().await;
    assert_eq!(told["category"], "alert_status", "{told}");
    assert_eq!(told["alert_id"], alert_id, "{told}");
    assert_eq!(told["title"], "ACME alert active", "{told}");

    // A replay publishes 10 (arming the crossing) and then 12 (crossing 11 upwards).
    let (status, _, replay) = gw
        .post(
            "/v1/admin/replays",
            Some(&admin),
            json!({ "symbol": "ACME", "bars_per_second": 100 }),
        )
        .await;
    assert_eq!(status, 201, "{replay}");
    let fired = stream.next().await;
    assert_eq!(fired["category"], "price_alert", "{fired}");
    assert_eq!(fired["alert_id"], alert_id, "{fired}");
    assert_eq!(fired["symbol"], "ACME", "{fired}");
    assert_eq!(fired["body"], "ACME broke out at 12.00", "{fired}");
    // Unread: the welcome message, the activation and this one.
    assert_eq!(fired["unread_count"], 3, "{fired}");

    let (_, _, alert) = gw
        .get(&format!("/v1/alerts/{alert_id}"), Some(&token))
        .await;
    assert_eq!(alert["status"], "triggered", "{alert}");
    assert_eq!(alert["trigger_count"], 1, "{alert}");
    let (status, _, page) = gw
        .get("/v1/alerts?status=triggered&symbol=ACME", Some(&token))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["alerts"].as_array().unwrap().len(), 1, "{page}");
    let (_, _, page) = gw.get("/v1/alerts?status=active", Some(&token)).await;
    assert_eq!(page["alerts"], json!([]), "{page}");

    let (status, _, listed) = gw.get("/v1/notifications", Some(&token)).await;
    assert_eq!(status, 200, "{listed}");
    let categories: Vec<&str> = listed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["category"].as_str().unwrap())
        .collect();
    assert_eq!(
        categories,
        ["price_alert", "alert_status", "account"],
        "newest first"
    );
    // A client that saw only the welcome message reconnects with its id: the two it missed
    // come first, oldest first.
    let welcome = listed["notifications"][2]["notification_id"]
        .as_str()
        .unwrap();
    let mut resumed = NotificationStream::resume(&gw, &token, Some(welcome)).await;
    assert_eq!(resumed.next().await["category"], "alert_status");
    assert_eq!(resumed.next().await["category"], "price_alert");
    let (status, _, problem) = send(
        gw.http
            .get(gw.url("/v1/stream/notifications"))
            .bearer_auth(&token)
            .header("last-event-id", "yesterday"),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        problem["type"],
        "https://mirai.dev/problems/invalid-last-event-id"
    );
    let (_, _, unread) = gw
        .get(
            "/v1/notifications?unread_only=true&category=price_alert",
            Some(&token),
        )
        .await;
    assert_eq!(unread["notifications"].as_array().unwrap().len(), 1);
    let first = listed["notifications"][0]["notification_id"].clone();
    let (status, _, marked) = gw
        .post(
            "/v1/notifications/read",
            Some(&token),
            json!({ "notification_ids": [first] }),
        )
        .await;
    assert_eq!(status, 200, "{marked}");
    assert_eq!(marked, json!({ "updated": 1, "unread_count": 2 }));
    let (_, _, count) = gw.get("/v1/notifications/unread-count", Some(&token)).await;
    assert_eq!(count, json!({ "unread_count": 2 }));
    let (_, _, marked) = gw
        .post(
            "/v1/notifications/read",
            Some(&token),
            json!({ "all": true }),
        )
        .await;
    assert_eq!(marked["unread_count"], 0, "{marked}");

    // Someone else neither sees nor deletes it.
    let (_, other, _) = gw.sign_up("bo@example.com").await;
    let (status, headers, problem) = gw
        .get(&format!("/v1/alerts/{alert_id}"), Some(&other))
        .await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, _, _) = send(
        gw.http
            .delete(gw.url(&format!("/v1/alerts/{alert_id}")))
            .bearer_auth(&other),
    )
    .await;
    assert_eq!(
        status, 204,
        "idempotent, and nothing of the owner's changes"
    );
    assert_eq!(alert_status(&gw, &token, &alert_id).await, "triggered");
    let (status, _, _) = send(
        gw.http
            .delete(gw.url(&format!("/v1/alerts/{alert_id}")))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        gw.get(&format!("/v1/alerts/{alert_id}"), Some(&token))
            .await
            .0,
        404
    );
    gw.stop().await;
}

#[tokio::test]
async fn unknown_symbols_are_rejected_visibly_and_bad_input_gets_problem_details() {
    let gw = Gateway::start().await;
    let (_, token, _) = gw.sign_up("cy@example.com").await;

    let (status, _, _) = gw
        .post(
            "/v1/alerts",
            None,
            json!({ "symbol": "ACME", "condition": { "kind": "above", "level": 1.0 } }),
        )
        .await;
    assert_eq!(status, 401);
    for (body, names) in [
        (
            json!({ "symbol": "ACME", "condition": { "kind": "above" } }),
            "condition.level",
        ),
        (
            json!({ "symbol": "ACME", "condition": { "kind": "moving_up", "amount": 1.0, "percent": 2.0, "window_seconds": 60 } }),
            "amount and percent",
        ),
        (
            json!({ "symbol": "ACME", "condition": { "kind": "sideways", "level": 1.0 } }),
            "sideways",
        ),
        (
            json!({ "symbol": "ACME", "condition": { "kind": "above", "level": 1.0 }, "colour": "red" }),
            "colour",
        ),
        (
            json!({ "symbol": "ACME", "condition": { "kind": "above", "level": 1.0 }, "message_template": "{{nope}}" }),
            "nope",
        ),
        (
            json!({ "symbol": "ACME", "condition": { "kind": "probability_up_at_least", "threshold": 1.5 } }),
            "threshold",
        ),
    ] {
        let (status, headers, problem) = gw.post("/v1/alerts", Some(&token), body.clone()).await;
        // 400 for values the service refuses, 422 for a body that does not deserialise.
        assert!(matches!(status, 400 | 422), "{body} → {status} {problem}");
        assert_eq!(headers["content-type"], "application/problem+json");
        assert!(
            problem["detail"].as_str().unwrap().contains(names),
            "{body} → {problem}"
        );
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("https://mirai.dev/problems/")
        );
    }
    let (status, _, problem) = gw.get("/v1/alerts?status=asleep", Some(&token)).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("asleep"),
        "{problem}"
    );
    let (status, _, problem) = gw
        .get("/v1/notifications?category=gossip", Some(&token))
        .await;
    assert_eq!(status, 400, "{problem}");

    // A well-formed ticker stock-data does not know: the saga's compensation, with the reason.
    let (status, _, created) = gw
        .post(
            "/v1/alerts",
            Some(&token),
            json!({ "symbol": "NOPE", "condition": { "kind": "below", "level": 5.0 } }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let alert_id = created["alert_id"].as_str().unwrap().to_owned();
    eventually("the alert to be rejected", json!("rejected"), async || {
        alert_status(&gw, &token, &alert_id).await
    })
    .await;
    let (_, _, alert) = gw
        .get(&format!("/v1/alerts/{alert_id}"), Some(&token))
        .await;
    assert!(
        !alert["status_reason"].as_str().unwrap().is_empty(),
        "the reason is shown: {alert}"
    );
    eventually("the user to be told", 1, async || {
        gw.get("/v1/notifications?category=alert_status", Some(&token))
            .await
            .2["notifications"]
            .as_array()
            .map_or(0, Vec::len)
    })
    .await;

    // Webhook endpoints: private targets are refused, public ones get a secret.
    let (status, _, problem) = gw
        .post(
            "/v1/webhooks",
            Some(&token),
            json!({ "url": "https://127.0.0.1/hook" }),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{problem}"
    );
    let (status, _, problem) = gw
        .post(
            "/v1/webhooks",
            Some(&token),
            json!({ "url": "http://hooks.example.com/mirai" }),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    let (status, headers, created) = gw
        .post(
            "/v1/webhooks",
            Some(&token),
            json!({ "url": "https://hooks.example.com/mirai", "categories": ["price_alert"] }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(headers["cache-control"], "no-store");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let endpoint = created["endpoint"]["webhook_endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(created["endpoint"]["status"], "enabled");
    let (status, _, rotated) = gw
        .post(
            &format!("/v1/webhooks/{endpoint}/rotate-secret"),
            Some(&token),
            json!({ "overlap_seconds": 3600 }),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["secret"], secret);
    assert!(rotated["endpoint"]["previous_secret_expires_at"].is_string());
    let (status, _, problem) = gw
        .post(
            &format!("/v1/webhooks/{endpoint}/rotate-secret"),
            Some(&token),
            json!({ "overlap_seconds": 30_000_000 }),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    let (_, _, list) = gw.get("/v1/webhooks", Some(&token)).await;
    assert_eq!(list["endpoints"].as_array().unwrap().len(), 1, "{list}");
    assert!(list["endpoints"][0].get("secret").is_none(), "{list}");
    let (status, _, log) = gw
        .get(&format!("/v1/webhooks/{endpoint}/deliveries"), Some(&token))
        .await;
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["deliveries"], json!([]));
    let (status, _, _) = gw.get("/v1/deliveries?status=lost", Some(&token)).await;
    assert_eq!(status, 400);

    // Preferences: validated field by field.
    let (status, _, defaults) = gw.get("/v1/notification-preferences", Some(&token)).await;
    assert_eq!(status, 200, "{defaults}");
    assert!(defaults["updated_at"].is_null(), "{defaults}");
    let patch = |body: Value| {
        send(
            gw.http
                .patch(gw.url("/v1/notification-preferences"))
                .bearer_auth(&token)
                .json(&body),
        )
    };
    let (status, _, problem) = patch(json!({ "quiet_hours": {
        "enabled": true, "start": "22:00", "end": "07:00", "time_zone": "Mars/Olympus" } }))
    .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("Mars/Olympus"),
        "{problem}"
    );
    let (status, _, prefs) = patch(json!({
        "quiet_hours": { "enabled": true, "start": "22:00", "end": "07:00", "time_zone": "Asia/Tokyo" },
        "channels": [{ "channel": "email", "category": "report", "enabled": false }],
    }))
    .await;
    assert_eq!(status, 200, "{prefs}");
    assert_eq!(prefs["quiet_hours"]["time_zone"], "Asia/Tokyo");
    assert_eq!(
        prefs["channels"],
        json!([{ "channel": "email", "category": "report", "enabled": false }])
    );
    assert!(prefs["updated_at"].is_string());
    gw.stop().await;
}
