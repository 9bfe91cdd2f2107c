//! Security mail for account events (issue 17, finding 5): the unlock link of a locked account
//! and the notice of a sign-up attempt with the owner's address, at a real local SMTP server.

use mirai_proto::events::v1 as ev;

use crate::email::{SmtpServer, mail_text};
use crate::helpers::{eventually, spawn_with};

#[tokio::test]
async fn a_locked_account_gets_its_unlock_link_and_a_signup_attempt_is_told_to_the_owner() {
    let smtp = SmtpServer::start();
    let app = spawn_with(|c| c.smtp = Some(smtp.config())).await;
    let owner = app.add_user("owner@example.com", "UTC", &["user"]).await;
    let url = "https://app.example/unlock?token=s3cret-Token_value";
    app.publish(
        "user",
        &ev::UserAccountLocked {
            user_id: owner.to_string(),
            locked_until: Some(prost_types::Timestamp {
                seconds: 4_102_444_800,
                nanos: 0,
            }),
            unlock_url: url.into(),
            unlock_url_expires_at: None,
            distinct_ips: 3,
        },
        None,
    )
    .await;
    let messages = eventually("the unlock mail", || async {
        let m = smtp.messages();
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(
        messages[0]["rcpt_tos"],
        serde_json::json!(["owner@example.com"])
    );
    let raw = mail_text(&messages[0]);
    assert!(raw.contains(url), "{raw}");
    assert!(raw.contains("3 different networks"), "{raw}");
    // The link is a credential: it is not stored as a notification or a delivery.
    let stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM notifications) + (SELECT count(*) FROM deliveries)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, 0);

    app.publish(
        "user",
        &ev::UserRegistrationAttempted {
            user_id: owner.to_string(),
        },
        None,
    )
    .await;
    let messages = eventually("the sign-up notice", || async {
        let m = smtp.messages();
        (m.len() >= 2).then_some(m)
    })
    .await;
    let raw = mail_text(&messages[1]);
    assert!(
        raw.contains("tried to create a MiraiKakaku account"),
        "{raw}"
    );
}
