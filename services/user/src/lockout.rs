//! The brute-force lockout around password attempts (see the README): admitting an attempt
//! before its password is hashed, settling a failure (lockouts, their audit entries and the
//! emailed unlock link), and unlocking with that link. Admin unlocks are in [`crate::admin`].

use chrono::{DateTime, Utc};
use mirai_platform::events::outbox;
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use tonic::Status;
use uuid::Uuid;

use crate::SERVICE;
use crate::context::Context;
use crate::error::{Result, bad_credentials, db};
use crate::store;
use crate::store::audit::Entry;
use crate::store::throttle::Scope;
use crate::store::users::UserRow;

type Kind = pb::AuditEventKind;

/// RESOURCE_EXHAUSTED with the `retry-after` trailer in whole seconds (rounded up). The one
/// `Status` this service builds itself: [`Error`] has no room for trailers.
fn locked_out(until: DateTime<Utc>, now: DateTime<Utc>) -> Status {
    let seconds = ((until - now).num_milliseconds().max(0) as u64)
        .div_ceil(1000)
        .max(1);
    let mut status = Status::resource_exhausted("too many failed attempts; try again later");
    if let Ok(value) = seconds.to_string().parse() {
        status.metadata_mut().insert("retry-after", value);
    }
    status
}

/// The caller's IP as the gateway reported it (empty when unknown).
pub fn client_ip(client: Option<&pb::ClientContext>) -> &str {
    client.map_or("", |c| c.ip.trim())
}

/// Admits a password attempt, counting it *before* the password is hashed (concurrent
/// guesses cannot all pass a check made before any of them failed); refuses while the
/// (account, IP) pair, the IP or the account is locked out. Answers with a `Status`, for
/// the lockout's trailer ([`locked_out`]): the RPCs call it before their flow.
pub async fn admit(
    ctx: &Context,
    account: &str,
    client: Option<&pb::ClientContext>,
    now: DateTime<Utc>,
) -> Result<(), Status> {
    store::throttle::admit_attempt(
        &ctx.pool,
        account,
        client_ip(client),
        &ctx.config.lockout,
        now,
    )
    .await
    .map_err(db("throttle"))?
    .map_err(|until| locked_out(until, now))
}

/// Settles a failed attempt: starts the lockouts it completes and audits them; a lockout
/// of a known account also gets the owner an unlock link by email
/// (`user.account.locked`).
pub async fn count_failure(
    ctx: &Context,
    account: &str,
    user: Option<Uuid>,
    client: Option<&pb::ClientContext>,
    now: DateTime<Utc>,
) -> Result<()> {
    let lockout = &ctx.config.lockout;
    let ip = client_ip(client);
    let started = store::throttle::record_failure(&ctx.pool, account, ip, lockout, now)
        .await
        .map_err(db("throttle"))?;
    for locked in started {
        let mut tx = ctx.pool.begin().await?;
        let mut entry = Entry::new(Kind::LockedOut, client)
            .detail("scope", locked.scope.as_str())
            .detail("locked_until", locked.until.to_rfc3339());
        if let (Scope::Account | Scope::Pair, Some(user)) = (locked.scope, user) {
            entry = entry.user(user);
        }
        if let (Scope::Account, Some(user)) = (locked.scope, user) {
            entry = entry.detail("distinct_ips", locked.ips.to_string());
            let expires_at = now
                + chrono::Duration::from_std(lockout.unlock_link_ttl)
                    .unwrap_or(chrono::Duration::MAX);
            let secret = store::throttle::new_unlock_token(&mut *tx, user, expires_at)
                .await
                .map_err(db("throttle"))?;
            let event = ev::UserAccountLocked {
                user_id: user.to_string(),
                locked_until: Some(wire::timestamp(locked.until)),
                unlock_url: format!("{}?token={secret}", lockout.unlock_url),
                unlock_url_expires_at: Some(wire::timestamp(expires_at)),
                distinct_ips: locked.ips,
            };
            outbox::enqueue(&mut tx, SERVICE, &event, None)
                .await
                .map_err(db("event"))?;
        }
        entry.write(&mut *tx).await.map_err(db("audit"))?;
        tx.commit().await?;
        tracing::warn!(message = "Login locked out.", scope = locked.scope.as_str(), until = %locked.until);
    }
    Ok(())
}

pub async fn unlock_with_link(
    ctx: &Context,
    request: pb::UnlockWithLinkRequest,
) -> Result<pb::UnlockWithLinkResponse> {
    let secret = request.token.trim();
    if secret.is_empty() || secret.len() > 128 {
        return Err(bad_credentials());
    }
    let mut tx = ctx.pool.begin().await?;
    let id = store::throttle::spend_unlock_token(&mut *tx, secret, Utc::now())
        .await
        .map_err(db("throttle"))?
        .ok_or_else(bad_credentials)?;
    let user = store::users::user_by_id(&mut *tx, id)
        .await?
        .filter(UserRow::is_active)
        .ok_or_else(bad_credentials)?;
    let was_locked =
        store::throttle::clear_account(&mut tx, &store::throttle::account_key(&user.email))
            .await
            .map_err(db("throttle"))?;
    Entry::new(Kind::Unlocked, request.client.as_ref())
        .user(id)
        .detail("via", "email_link")
        .detail("was_locked", was_locked.to_string())
        .write(&mut *tx)
        .await
        .map_err(db("audit"))?;
    tx.commit().await?;
    tracing::info!(message = "Account unlocked with an emailed link.", user_id = %id);
    Ok(pb::UnlockWithLinkResponse {})
}
