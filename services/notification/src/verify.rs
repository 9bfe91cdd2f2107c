//! Email address verification (issue 17, finding 7): alert email goes only to an address its
//! owner has confirmed, so the service cannot be used to mail strangers.
//!
//! A link carries a token `base64url(claims) "." base64url(HMAC-SHA256(key, claims))`; the
//! claims name the user, the address, a random nonce and the expiry. The nonce is also stored
//! on the address's row: a token works only while it is the latest one sent for that address,
//! and only once (confirming clears it). An unverified address gets nothing but verification
//! links, at most `per_address` per address and `per_user` per user in an hour.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::config::VerificationConfig;
use crate::context::Context;
use crate::deliver::email;
use crate::error::Error;
use crate::store::emails;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Claims {
    /// User.
    u: Uuid,
    /// Address (lower-cased).
    a: String,
    /// Nonce.
    n: String,
    /// Expiry (Unix seconds).
    e: i64,
}

fn mac(config: &VerificationConfig) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(config.key.expose_secret().as_bytes())
        .expect("HMAC takes any key length")
}

/// The form addresses are stored and compared in.
pub fn normalise(address: &str) -> String {
    address.trim().to_lowercase()
}

fn sign(config: &VerificationConfig, claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("serialisable"));
    let mut mac = mac(config);
    mac.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{signature}")
}

fn open(config: &VerificationConfig, token: &str, now: DateTime<Utc>) -> Result<Claims, Error> {
    let bad = || Error::invalid("token", "not a verification token from this service");
    let (payload, signature) = token.trim().split_once('.').ok_or_else(bad)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| bad())?;
    let mut mac = mac(config);
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature).map_err(|_| bad())?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(bad)?;
    if claims.e < now.timestamp() {
        return Err(Error::FailedPrecondition(
            "the verification link has expired; ask for a new one".into(),
        ));
    }
    Ok(claims)
}

/// Records that the user's email may go to `address` (unverified unless it already was);
/// returns whether it is verified.
pub async fn ensure(
    conn: &mut PgConnection,
    user_id: Uuid,
    address: &str,
) -> Result<bool, sqlx::Error> {
    emails::ensure(conn, user_id, normalise(address)).await
}

/// Forgets the user's addresses other than `keep` (the account's and the preferences' current
/// ones): an address changed away from and back must be verified again.
pub async fn forget_others(
    conn: &mut PgConnection,
    user_id: Uuid,
    keep: &[&str],
) -> Result<(), sqlx::Error> {
    let keep: Vec<String> = keep
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| normalise(a))
        .collect();
    emails::forget_others(conn, user_id, &keep).await
}

/// The outcome of asking for a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// Too many links for the address or the user in the last hour.
    Limited,
    /// Already verified: nothing sent.
    Verified,
}

/// Sends a fresh link to the user's `address` unless verified or rate-limited.
pub async fn send_link(ctx: &Context, user_id: Uuid, address: &str) -> anyhow::Result<Sent> {
    let Some(mailer) = &ctx.email else {
        anyhow::bail!("email is not configured");
    };
    let config = &ctx.config.verification;
    let address = normalise(address);
    let mut tx = ctx.pool.begin().await?;
    ensure(&mut tx, user_id, &address).await?;
    // The row lock orders concurrent requests for the address; the user's count is read after
    // it, so two addresses of one user may each pass at the limit's edge once (harmless).
    let verified = emails::lock_verified(&mut tx, user_id, &address).await?;
    if verified {
        return Ok(Sent::Verified);
    }
    let (for_address, for_user) = emails::recent_sends(&mut tx, user_id, &address).await?;
    if for_address >= i64::from(config.per_address) || for_user >= i64::from(config.per_user) {
        return Ok(Sent::Limited);
    }
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let claims = Claims {
        u: user_id,
        a: address.clone(),
        n: URL_SAFE_NO_PAD.encode(nonce),
        e: (Utc::now()
            + chrono::Duration::from_std(config.ttl).unwrap_or(chrono::Duration::days(1)))
        .timestamp(),
    };
    emails::record_send(&mut tx, user_id, &address, &claims.n).await?;
    tx.commit().await?;
    let link = format!(
        "{}{}token={}",
        config.link_base,
        if config.link_base.contains('?') {
            "&"
        } else {
            "?"
        },
        sign(config, &claims)
    );
    let hours = config.ttl.as_secs().div_ceil(3600);
    let item = email::Item {
        title: "Confirm your email address".into(),
        body: format!(
            "Someone (we hope you) asked for MiraiKakaku alerts to be sent to {address}. \
             Open this link within {hours} hour(s) to confirm: {link} \
             Until it is confirmed, this address receives nothing else from us; if it was \
             not you, ignore this message."
        ),
        symbol: String::new(),
        created_at: crate::public::rfc3339(Utc::now()),
    };
    let attempt = mailer
        .send(
            &address,
            "Confirm your email address for MiraiKakaku alerts",
            &[item],
        )
        .await;
    if attempt.outcome != mirai_proto::notification::v1::AttemptOutcome::Succeeded {
        anyhow::bail!("sending the verification link failed: {}", attempt.error);
    }
    Ok(Sent::Sent)
}

/// Confirms the address a token names; returns it.
pub async fn confirm(ctx: &Context, token: &str) -> Result<String, Error> {
    let claims = open(&ctx.config.verification, token, Utc::now())?;
    let confirmed = emails::confirm(&ctx.pool, claims.u, &claims.a, &claims.n).await?;
    confirmed.ok_or_else(|| {
        Error::FailedPrecondition(
            "the verification link was already used, replaced by a newer one, or the address \
             changed"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(key: &str) -> VerificationConfig {
        VerificationConfig {
            key: key.to_owned().into(),
            ..VerificationConfig::default()
        }
    }

    #[test]
    fn tokens_are_signed_and_expire() {
        let c = config("k1");
        let claims = Claims {
            u: Uuid::now_v7(),
            a: "a@example.com".into(),
            n: "nonce".into(),
            e: Utc::now().timestamp() + 60,
        };
        let token = sign(&c, &claims);
        assert_eq!(open(&c, &token, Utc::now()).unwrap(), claims);
        // Another key, a changed payload, garbage: refused as invalid.
        assert!(matches!(
            open(&config("k2"), &token, Utc::now()),
            Err(Error::InvalidArgument { .. })
        ));
        let (_, signature) = token.split_once('.').unwrap();
        let forged = Claims {
            a: "victim@example.com".into(),
            ..claims.clone()
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(matches!(
            open(&c, &format!("{forged_payload}.{signature}"), Utc::now()),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            open(&c, "x", Utc::now()),
            Err(Error::InvalidArgument { .. })
        ));
        // Past its expiry: a precondition, with a way out.
        let later = Utc::now() + chrono::Duration::seconds(120);
        assert!(matches!(
            open(&c, &token, later),
            Err(Error::FailedPrecondition(_))
        ));
    }
}
