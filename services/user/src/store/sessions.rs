//! Sessions: refresh-token families and their tokens (stored only as SHA-256).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

use super::interval;
use crate::tokens::{new_secret, secret_hash};

/// A newly issued refresh token (the secret exists only here and in the response).
pub struct IssuedRefresh {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

/// Starts a new family (session) for `user_id` with its first token.
pub async fn new_family(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    now: DateTime<Utc>,
    idle: Duration,
    absolute: Duration,
) -> Result<IssuedRefresh, sqlx::Error> {
    let family_id = Uuid::now_v7();
    let family_expires = now + interval(absolute);
    sqlx::query!(
        "INSERT INTO refresh_families (family_id, user_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
        family_id,
        user_id,
        now,
        family_expires,
    )
    .execute(&mut **tx)
    .await?;
    add_token(
        tx,
        family_id,
        now,
        (now + interval(idle)).min(family_expires),
    )
    .await
}

async fn add_token(
    tx: &mut Transaction<'_, Postgres>,
    family_id: Uuid,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<IssuedRefresh, sqlx::Error> {
    let secret = new_secret();
    sqlx::query!(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4)",
        secret_hash(&secret),
        family_id,
        now,
        expires_at,
    )
    .execute(&mut **tx)
    .await?;
    Ok(IssuedRefresh { secret, expires_at })
}

/// A presented refresh token with its family, locked for update.
pub struct PresentedToken {
    pub family_id: Uuid,
    pub user_id: Uuid,
    pub token_expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub family_expires_at: DateTime<Utc>,
    pub family_revoked_at: Option<DateTime<Utc>>,
}

pub async fn find_token(
    tx: &mut Transaction<'_, Postgres>,
    secret: &str,
) -> Result<Option<PresentedToken>, sqlx::Error> {
    sqlx::query_as!(
        PresentedToken,
        "SELECT t.family_id, f.user_id, t.expires_at AS token_expires_at, t.used_at,
                f.expires_at AS family_expires_at, f.revoked_at AS family_revoked_at
           FROM refresh_tokens t JOIN refresh_families f USING (family_id)
          WHERE t.token_hash = $1
          FOR UPDATE OF t, f",
        secret_hash(secret),
    )
    .fetch_optional(&mut **tx)
    .await
}

/// Spends the presented token and issues the family's next one.
pub async fn rotate(
    tx: &mut Transaction<'_, Postgres>,
    secret: &str,
    presented: &PresentedToken,
    now: DateTime<Utc>,
    idle: Duration,
) -> Result<IssuedRefresh, sqlx::Error> {
    sqlx::query!(
        "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1",
        secret_hash(secret),
        now
    )
    .execute(&mut **tx)
    .await?;
    let expires_at = (now + interval(idle)).min(presented.family_expires_at);
    add_token(tx, presented.family_id, now, expires_at).await
}

/// Revokes one family; `false` when it was already revoked.
pub async fn revoke_family(
    db: impl PgExecutor<'_>,
    family_id: Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $2
          WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
        reason,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Revokes every live family of `user_id`; returns how many.
pub async fn revoke_all_families(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $2
          WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
        reason,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
