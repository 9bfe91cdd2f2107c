//! Email address verification (issue 17, finding 7) against the real local SMTP server: an
//! unverified address gets verification links only (rate-limited), a signed single-use link
//! confirms it, and changing the address starts over.

use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use mirai_proto::user::v1::Role;
use uuid::Uuid;

use crate::email::{SmtpServer, mail, mail_text, set_preferences};
use crate::helpers::{TestApp, eventually, spawn_with, user};
use crate::webhooks::fire;

/// The token of the verification link in a message.
fn token_in(message: &serde_json::Value) -> String {
    let text = mail_text(message);
    let start = text.find("token=").expect("a verification link") + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

fn recipient(message: &serde_json::Value) -> &str {
    message["rcpt_tos"][0].as_str().unwrap()
}

/// A user registered through `user.registered`, as the user service announces them.
async fn register(app: &TestApp, email: &str) -> Uuid {
    let id = Uuid::now_v7();
    app.publish(
        "user",
        &ev::UserRegistered {
            user_id: id.to_string(),
            email: email.to_owned(),
            display_name: "New".into(),
            time_zone: "UTC".into(),
            locale: "en".into(),
            roles: vec![Role::User as i32],
        },
        None,
    )
    .await;
    eventually("the user to be known", || async {
        let known: Option<String> =
            sqlx::query_scalar("SELECT email FROM users WHERE user_id = $1")
                .bind(id)
                .fetch_optional(&app.pool)
                .await
                .unwrap();
        known.filter(|e| !e.is_empty())
    })
    .await;
    id
}

async fn confirm(app: &mut TestApp, token: &str) -> Result<String, tonic::Status> {
    app.client
        .confirm_email_address(pb::ConfirmEmailAddressRequest {
            token: token.to_owned(),
        })
        .await
        .map(|r| r.into_inner().email)
}

async fn resend(app: &mut TestApp, owner: Uuid) -> Result<Vec<String>, tonic::Status> {
    app.client
        .resend_email_verification(user(
            owner,
            pb::ResendEmailVerificationRequest {
                user_id: owner.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner().sent_to)
}

#[tokio::test]
async fn alert_email_goes_only_to_a_verified_address() {
    let smtp = SmtpServer::start();
    let mut app = spawn_with(|c| c.smtp = Some(smtp.config())).await;
    let owner = register(&app, "Fresh@Example.com").await;

    // An alert fires: the unverified account address gets a verification link, not the alert.
    fire(&mut app, owner, "VRFA", &[pb::Channel::Email]).await;
    let messages = mail(&smtp, 1).await;
    assert_eq!(recipient(&messages[0]), "fresh@example.com");
    let first = mail_text(&messages[0]);
    assert!(first.contains("Confirm your email address"), "{first}");
    assert!(
        !first.contains("VRFA above"),
        "the alert must not go out: {first}"
    );
    let blocked = eventually("the alert email to be blocked", || async {
        app.deliveries_of(owner)
            .await
            .into_iter()
            .find(|(c, s, ..)| *c == pb::Channel::Email as i16 && s == "FAILED")
    })
    .await;
    let error: String =
        sqlx::query_scalar("SELECT last_error FROM deliveries WHERE user_id = $1 AND channel = $2")
            .bind(owner)
            .bind(pb::Channel::Email as i16)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(error.contains("not verified"), "{blocked:?}: {error}");

    // A forged or altered token is refused; the real one confirms, once.
    let token = token_in(&messages[0]);
    let mut altered = token.clone();
    altered.insert(3, 'x');
    assert_eq!(
        confirm(&mut app, &altered).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        confirm(&mut app, &token).await.unwrap(),
        "fresh@example.com"
    );
    assert_eq!(
        confirm(&mut app, &token).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition,
        "a link works once"
    );

    // Now alerts reach the address.
    fire(&mut app, owner, "VRFB", &[pb::Channel::Email]).await;
    let messages = mail(&smtp, 2).await;
    assert!(recipient(&messages[1]).eq_ignore_ascii_case("fresh@example.com"));
    assert!(mail_text(&messages[1]).contains("VRFB above"));
    assert_eq!(resend(&mut app, owner).await.unwrap(), Vec::<String>::new());

    // Changing the address starts over: the new one gets a link at once and nothing else.
    set_preferences(
        &mut app,
        owner,
        pb::Preferences {
            email: "elsewhere@example.com".into(),
            ..Default::default()
        },
        &["email"],
    )
    .await;
    let messages = mail(&smtp, 3).await;
    assert_eq!(recipient(&messages[2]), "elsewhere@example.com");
    assert!(mail_text(&messages[2]).contains("Confirm your email address"));
    fire(&mut app, owner, "VRFC", &[pb::Channel::Email]).await;
    // Links are rate-limited per address (3 an hour): the alert's blocked attempt sent the
    // second, a resend the third, and the next resend is refused.
    let messages = mail(&smtp, 4).await;
    assert!(!mail_text(&messages[3]).contains("VRFC above"));
    assert_eq!(
        resend(&mut app, owner).await.unwrap(),
        vec!["elsewhere@example.com".to_owned()]
    );
    let refused = resend(&mut app, owner).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(smtp.messages().len(), 5);
    // An older link for the address no longer works once a newer one was sent.
    let older = token_in(&messages[2]);
    assert_eq!(
        confirm(&mut app, &older).await.unwrap_err().code(),
        tonic::Code::FailedPrecondition
    );
    // Going back to the account address forgets the other one (it would need a new link).
    set_preferences(&mut app, owner, pb::Preferences::default(), &["email"]).await;
    let verified: Vec<(String, bool)> = sqlx::query_as(
        "SELECT address, verified_at IS NOT NULL FROM email_addresses WHERE user_id = $1",
    )
    .bind(owner)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(verified, [("fresh@example.com".to_owned(), true)]);
}

#[tokio::test]
async fn a_changed_account_address_is_unverified_again() {
    let smtp = SmtpServer::start();
    let app = spawn_with(|c| c.smtp = Some(smtp.config())).await;
    let owner = app.add_user("old@example.com", "UTC", &["user"]).await;
    // The user service announces the account again with another address.
    app.publish(
        "user",
        &ev::UserRegistered {
            user_id: owner.to_string(),
            email: "new@example.com".into(),
            display_name: "Moved".into(),
            time_zone: "UTC".into(),
            locale: "en".into(),
            roles: vec![Role::User as i32],
        },
        None,
    )
    .await;
    let rows = eventually("the address to change", || async {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT address, verified_at IS NOT NULL FROM email_addresses WHERE user_id = $1",
        )
        .bind(owner)
        .fetch_all(&app.pool)
        .await
        .unwrap();
        (rows.len() == 1 && rows[0].0 == "new@example.com").then_some(rows)
    })
    .await;
    assert!(!rows[0].1, "the new address starts unverified");
}
