//! Email against a real local SMTP server (aiosmtpd), preferences, quiet hours, digests and
//! critical system notifications.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mirai_notification::config::{SmtpConfig, SmtpTls};
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use pb::condition::Kind;
use uuid::Uuid;

use crate::helpers::{TestApp, alert, eventually, level, py_dir, python, spawn_with, user};

/// The text of a message the SMTP server received, with quoted-printable soft line breaks
/// joined and `=3D` decoded.
pub fn mail_text(message: &serde_json::Value) -> String {
    message["data"]
        .as_str()
        .unwrap()
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=")
}
use crate::webhooks::fire;

/// aiosmtpd on a free loopback port, recording every message to a JSON-lines file.
pub struct SmtpServer {
    pub port: u16,
    out: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("mail.jsonl");
        let port = mirai_platform::testing::free_port();
        let mut child = Command::new(python())
            .arg(py_dir().join("smtp_server.py"))
            .arg(port.to_string())
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "the SMTP server did not start");
        Self {
            port,
            out,
            child,
            _dir: dir,
        }
    }

    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn config(&self) -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: SmtpTls::None,
            credentials: None,
            from: "MiraiKakaku <alerts@mirai.test>".into(),
            timeout: Duration::from_secs(5),
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn mail(smtp: &SmtpServer, n: usize) -> Vec<serde_json::Value> {
    eventually(&format!("{n} messages at the SMTP server"), || async {
        let m = smtp.messages();
        (m.len() >= n).then_some(m)
    })
    .await
}

pub async fn set_preferences(
    app: &mut TestApp,
    owner: Uuid,
    prefs: pb::Preferences,
    paths: &[&str],
) {
    app.client
        .update_preferences(user(
            owner,
            pb::UpdatePreferencesRequest {
                user_id: owner.to_string(),
                preferences: Some(prefs),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
            },
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn email_reaches_the_smtp_server_with_plain_and_html_parts() {
    let smtp = SmtpServer::start();
    let mut app = spawn_with(|c| c.smtp = Some(smtp.config())).await;
    let owner = app.add_user("trader@example.com", "UTC", &["user"]).await;
    let created = app
        .create_alert(
            owner,
            pb::Alert {
                name: "<b>Tom & Jerry</b>".into(),
                ..alert("MAIL", level(Kind::Above, 10.0), &[pb::Channel::Email])
            },
        )
        .await;
    app.confirm(owner, &created).await;
    app.price("MAIL", 12.5).await;
    let messages = mail(&smtp, 1).await;
    let m = &messages[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["trader@example.com"]));
    assert_eq!(m["mail_from"], "alerts@mirai.test");
    // Quoted-printable: join soft line breaks, decode the escaped '='.
    let raw = m["data"]
        .as_str()
        .unwrap()
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(
        raw.contains("text/plain") && raw.contains("text/html"),
        "{raw}"
    );
    assert!(raw.contains("Subject:"), "{raw}");
    assert!(raw.contains("MAIL above 10.00: last price 12.50"), "{raw}");
    // User text is escaped in the HTML part.
    assert!(
        raw.contains(
            "<p style=\"font-weight: bold; margin: 0;\">&lt;b&gt;Tom &amp; Jerry&lt;&#x2f;b&gt;"
        ),
        "{raw}"
    );
    let sent = eventually("the delivery to be SENT", || async {
        let d = app.deliveries_of(owner).await;
        d.into_iter()
            .find(|(c, s, ..)| *c == pb::Channel::Email as i16 && s == "SENT")
    })
    .await;
    assert_eq!(sent.3, "trader@example.com");
    let code: i32 = sqlx::query_scalar("SELECT response_code FROM delivery_attempts LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(code, 250);
}

#[tokio::test]
async fn quiet_hours_delay_email_and_critical_system_notifications_bypass_them() {
    let smtp = SmtpServer::start();
    let mut app = spawn_with(|c| c.smtp = Some(smtp.config())).await;
    let owner = app
        .add_user("night@example.com", "Asia/Tokyo", &["user", "admin"])
        .await;
    // Quiet for the two hours around now, in the user's (profile) time zone.
    let tokyo = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    let start = (tokyo - chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    let end = (tokyo + chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    set_preferences(
        &mut app,
        owner,
        pb::Preferences {
            quiet_hours: Some(pb::QuietHours {
                enabled: true,
                start,
                end,
                time_zone: String::new(),
            }),
            ..Default::default()
        },
        &["quiet_hours"],
    )
    .await;
    fire(
        &mut app,
        owner,
        "QUIET",
        &[pb::Channel::InApp, pb::Channel::Email],
    )
    .await;
    let deferred = eventually("the email delivery to be held", || async {
        app.deliveries_of(owner)
            .await
            .into_iter()
            .find(|(c, s, ..)| *c == pb::Channel::Email as i16 && s == "DEFERRED")
    })
    .await;
    assert_eq!(deferred.2, 0, "not attempted");
    let next: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT next_attempt_at FROM deliveries WHERE channel = 2 AND status = 'DEFERRED'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let minutes = (next - chrono::Utc::now()).num_minutes();
    assert!(
        (50..=61).contains(&minutes),
        "held until the end of quiet hours: {minutes} min"
    );
    // The in-app copy is there at once.
    let in_app = app
        .client
        .get_unread_count(user(
            owner,
            pb::GetUnreadCountRequest {
                user_id: owner.to_string(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .unread_count;
    assert!(in_app >= 1);
    // A degraded model is critical: the admin is emailed now, quiet hours or not.
    app.publish(
        "prediction",
        &ev::ModelDegraded {
            model_name: "spx-lstm".into(),
            model_version: "1.0.0".into(),
            reason: "rolling MASE 1.31 > 1.20".into(),
            ..Default::default()
        },
        None,
    )
    .await;
    let messages = mail(&smtp, 1).await;
    let raw = messages[0]["data"].as_str().unwrap();
    assert!(raw.contains("spx-lstm 1.0.0 degraded"), "{raw}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 1, "the alert email is still held");
}

#[tokio::test]
async fn switched_off_channels_are_suppressed_and_digests_bundle() {
    let smtp = SmtpServer::start();
    let mut app = spawn_with(|c| c.smtp = Some(smtp.config())).await;
    let owner = app.add_user("digest@example.com", "UTC", &["user"]).await;
    set_preferences(
        &mut app,
        owner,
        pb::Preferences {
            digest: Some(pb::Digest {
                frequency: pb::DigestFrequency::Hourly.into(),
                deliver_at: String::new(),
                categories: vec![pb::Category::PriceAlert.into()],
            }),
            // Status changes (e.g. "alert active") not in the app.
            channels: vec![pb::ChannelPreference {
                channel: pb::Channel::InApp.into(),
                category: pb::Category::AlertStatus.into(),
                enabled: false,
            }],
            ..Default::default()
        },
        &["digest", "channels"],
    )
    .await;
    for symbol in ["DGA", "DGB"] {
        fire(&mut app, owner, symbol, &[pb::Channel::Email]).await;
    }
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE user_id = $1 AND channel = 2 AND digest
           AND status = 'DEFERRED' AND next_attempt_at > now()",
    )
    .bind(owner)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(held, 2);
    // The digest hour arrives.
    sqlx::query("UPDATE deliveries SET next_attempt_at = now() WHERE user_id = $1 AND digest")
        .bind(owner)
        .execute(&app.pool)
        .await
        .unwrap();
    let messages = mail(&smtp, 1).await;
    let raw = messages[0]["data"].as_str().unwrap();
    assert!(raw.contains("digest: 2 notification(s)"), "{raw}");
    assert!(
        raw.contains("DGA above 10.00") && raw.contains("DGB above 10.00"),
        "{raw}"
    );
    eventually("both digest deliveries SENT", || async {
        let sent = app
            .deliveries_of(owner)
            .await
            .iter()
            .filter(|(c, s, ..)| *c == pb::Channel::Email as i16 && s == "SENT")
            .count();
        (sent == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.messages().len(), 1, "one message for the bundle");
    let suppressed = app
        .deliveries_of(owner)
        .await
        .iter()
        .filter(|(c, s, ..)| *c == pb::Channel::InApp as i16 && s == "SUPPRESSED")
        .count();
    assert_eq!(suppressed, 2, "the two activation notices");
    let listed = app
        .client
        .list_notifications(user(
            owner,
            pb::ListNotificationsRequest {
                user_id: owner.to_string(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert!(
        listed
            .iter()
            .all(|n| n.category != pb::Category::AlertStatus as i32)
    );
    assert_eq!(listed.len(), 2, "{listed:?}");
}
