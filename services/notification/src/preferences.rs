//! Notification preferences (channels, quiet hours, digests, the alert email address) and
//! the verification links of email addresses.

use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use uuid::Uuid;

use crate::context::Context;
use crate::domain::preferences;
use crate::error::{Error, Result};
use crate::verify;

pub async fn get(ctx: &Context, user_id: Uuid) -> Result<pb::GetPreferencesResponse> {
    let mut conn = ctx.pool.acquire().await?;
    let (mut prefs, updated_at) = crate::store::preferences::get(&mut conn, user_id).await?;
    prefs.user_id = user_id.to_string();
    prefs.updated_at = updated_at.map(wire::timestamp);
    Ok(pb::GetPreferencesResponse {
        preferences: Some(prefs),
    })
}

/// Applies the fields the mask names; a changed email address starts unverified and is sent a
/// verification link.
pub async fn update(
    ctx: &Context,
    user_id: Uuid,
    r: pb::UpdatePreferencesRequest,
) -> Result<pb::UpdatePreferencesResponse> {
    let new = r.preferences.unwrap_or_default();
    let mut tx = ctx.pool.begin().await?;
    let (mut prefs, mut updated_at) = crate::store::preferences::get(&mut tx, user_id).await?;
    let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
    let old_email = prefs.email.clone();
    for path in &paths {
        match path.as_str() {
            "channels" => prefs.channels = new.channels.clone(),
            "quiet_hours" => prefs.quiet_hours = new.quiet_hours.clone(),
            "digest" => prefs.digest = new.digest.clone(),
            "email" => prefs.email = new.email.trim().to_owned(),
            other => {
                return Err(Error::invalid(
                    "update_mask",
                    format!("{other} cannot be changed"),
                ));
            }
        }
    }
    if !paths.is_empty() {
        preferences::validate(&prefs).map_err(|e| Error::invalid(e.field, e.problem))?;
        updated_at = Some(crate::store::preferences::put(&mut tx, user_id, &prefs).await?);
    }
    let new_email = (verify::normalise(&prefs.email) != verify::normalise(&old_email))
        .then(|| prefs.email.clone());
    if new_email.is_some() {
        // A changed address starts unverified; the old one is forgotten (unless it is the
        // account's).
        let account = crate::store::users::get(&mut tx, user_id)
            .await?
            .map(|p| p.email)
            .unwrap_or_default();
        verify::forget_others(&mut tx, user_id, &[account.as_str(), prefs.email.as_str()]).await?;
    }
    tx.commit().await?;
    if let Some(address) = new_email.filter(|a| !a.is_empty())
        && ctx.email.is_some()
        && let Err(error) = verify::send_link(ctx, user_id, &address).await
    {
        // The preferences are saved; the user can ask for the link again.
        tracing::warn!(message = "Sending a verification link failed.", %error);
    }
    prefs.user_id = user_id.to_string();
    prefs.updated_at = updated_at.map(wire::timestamp);
    Ok(pb::UpdatePreferencesResponse {
        preferences: Some(prefs),
    })
}

/// Sends fresh verification links to the user's unverified addresses (account and
/// preferences).
pub async fn resend_verification(
    ctx: &Context,
    user_id: Uuid,
) -> Result<pb::ResendEmailVerificationResponse> {
    if ctx.email.is_none() {
        return Err(Error::FailedPrecondition("email is not configured".into()));
    }
    let mut conn = ctx.pool.acquire().await?;
    let (prefs, _) = crate::store::preferences::get(&mut conn, user_id).await?;
    let account = crate::store::users::get(&mut conn, user_id)
        .await?
        .map(|p| p.email)
        .unwrap_or_default();
    drop(conn);
    let mut addresses: Vec<String> = [account, prefs.email]
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| verify::normalise(a))
        .collect();
    addresses.dedup();
    let mut sent_to = Vec::new();
    let mut limited = false;
    for address in addresses {
        match verify::send_link(ctx, user_id, &address).await {
            Ok(verify::Sent::Sent) => sent_to.push(address),
            Ok(verify::Sent::Limited) => limited = true,
            Ok(verify::Sent::Verified) => {}
            Err(error) => return Err(Error::from(error)),
        }
    }
    if limited && sent_to.is_empty() {
        return Err(Error::ResourceExhausted(
            "too many verification links for this address or user in the last hour; try again later".into(),
        ));
    }
    Ok(pb::ResendEmailVerificationResponse { sent_to })
}
