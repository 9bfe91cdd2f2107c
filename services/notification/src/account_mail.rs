//! Security mail for the user service's account events, to the account's own address:
//! - `user.account.locked`: failed sign-ins from several networks locked the account; the mail
//!   carries the single-use unlock link.
//! - `user.registration.attempted`: someone tried to sign up with the address (the sign-up was
//!   answered as for a new account, so it revealed nothing; only the owner learns of it).
//!
//! Sent straight over SMTP with the delivery worker's sender, not through the fan-out: the
//! unlock link is a credential and must not be stored as an in-app notification or a delivery
//! row, and security mail does not depend on the owner's channel preferences. A transient SMTP
//! failure fails the handler, so the event is redelivered (at-least-once mail).

use chrono::Utc;
use futures::future::BoxFuture;
use mirai_platform::events::Envelope;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1::AttemptOutcome;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::context::Context;
use crate::deliver::email::{Email, Item};
use crate::store::users;

/// Sends `body` to the account's address; `Ok` when sent, dropped for good (logged), or there
/// is no one to send to; `Err` when another attempt may succeed.
async fn send(
    ctx: &Context,
    tx: &mut PgConnection,
    user_id: &str,
    subject: &str,
    body: String,
) -> anyhow::Result<()> {
    let Ok(id) = user_id.parse::<Uuid>() else {
        return Ok(());
    };
    let Some(profile) = users::get(tx, id).await? else {
        tracing::warn!(message = "Account mail for an unknown user dropped.", user_id = %id);
        return Ok(());
    };
    let Some(smtp) = &ctx.config.smtp else {
        tracing::warn!(message = "Account mail not sent: email is not configured.", user_id = %id, subject);
        return Ok(());
    };
    let item = Item {
        title: subject.to_owned(),
        body,
        symbol: String::new(),
        created_at: Utc::now().to_rfc3339(),
    };
    let attempted = Email::new(smtp)?
        .send(&profile.email, subject, &[item])
        .await;
    match attempted.outcome {
        AttemptOutcome::Succeeded => {
            tracing::info!(message = "Account mail sent.", user_id = %id, subject);
            Ok(())
        }
        _ if attempted.retry => anyhow::bail!("account mail to {id}: {}", attempted.error),
        _ => {
            tracing::warn!(message = "Account mail refused for good.", user_id = %id, error = %attempted.error);
            Ok(())
        }
    }
}

fn utc(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(wire::datetime)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

pub fn on_account_locked<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    e: ev::UserAccountLocked,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let body = format!(
            "Sign-in attempts with wrong passwords from {} different networks locked your \
             account until {}. Your password was not accepted from any of them.\n\n\
             If you want to sign in now, open this link (it works once, until {}):\n{}\n\n\
             If these attempts were not yours, choose a new, unique password once you are \
             signed in.",
            e.distinct_ips,
            utc(e.locked_until.as_ref()),
            utc(e.unlock_url_expires_at.as_ref()),
            e.unlock_url,
        );
        send(
            ctx,
            tx,
            &e.user_id,
            "Your MiraiKakaku account was locked",
            body,
        )
        .await
    })
}

pub fn on_registration_attempted<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    e: ev::UserRegistrationAttempted,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let body = "Someone tried to create a MiraiKakaku account with your email address. \
                    Your account is unchanged and nothing about it was revealed to them.\n\n\
                    If it was you: you already have an account — sign in, or reset your \
                    password if you forgot it. If it was not you, you need not do anything."
            .to_owned();
        send(
            ctx,
            tx,
            &e.user_id,
            "Someone tried to sign up with your address",
            body,
        )
        .await
    })
}
