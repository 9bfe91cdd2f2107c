//! Personal API keys (`api_keys`; secrets stored only as SHA-256).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::tokens::secret_hash;

pub struct ApiKeyRow {
    pub api_key_id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key found by its secret, with its owner's roles and status.
pub struct KeyWithOwner {
    pub key: ApiKeyRow,
    pub owner_roles: Vec<String>,
    pub owner_status: String,
}

pub struct NewApiKey<'a> {
    pub api_key_id: Uuid,
    pub user_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    /// The whole secret; only its hash is stored.
    pub secret: &'a str,
    pub scopes: &'a [&'static str],
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    new: &NewApiKey<'_>,
) -> Result<ApiKeyRow, sqlx::Error> {
    // Every query of keys reads the columns of `ApiKeyRow`.
    sqlx::query_as!(
        ApiKeyRow,
        "INSERT INTO api_keys (api_key_id, user_id, name, prefix, secret_hash, scopes, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
          RETURNING api_key_id, user_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at",
        new.api_key_id,
        new.user_id,
        new.name,
        new.prefix,
        secret_hash(new.secret),
        new.scopes as _,
        new.expires_at,
    )
    .fetch_one(db)
    .await
}

/// The owner's keys, newest first; revoked and expired ones only with `include_revoked`.
pub async fn list(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    include_revoked: bool,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "SELECT api_key_id, user_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at FROM api_keys
              WHERE user_id = $1
                AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))
                AND ($3::uuid IS NULL OR api_key_id < $3)
              ORDER BY api_key_id DESC LIMIT $4",
        user_id,
        include_revoked,
        after,
        limit,
    )
    .fetch_all(db)
    .await
}

/// One of the owner's keys, locked for update.
pub async fn for_update(
    db: impl PgExecutor<'_>,
    api_key_id: Uuid,
    user_id: Uuid,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "SELECT api_key_id, user_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at FROM api_keys
          WHERE api_key_id = $1 AND user_id = $2 FOR UPDATE",
        api_key_id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

pub async fn revoke(db: impl PgExecutor<'_>, api_key_id: Uuid) -> Result<ApiKeyRow, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "UPDATE api_keys SET revoked_at = now() WHERE api_key_id = $1
          RETURNING api_key_id, user_id, name, prefix, scopes, created_at, last_used_at, expires_at, revoked_at",
        api_key_id,
    )
    .fetch_one(db)
    .await
}

/// Revokes every live key of `user_id`.
pub async fn revoke_all(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The key whose secret this is, with its owner.
pub async fn by_secret(
    db: impl PgExecutor<'_>,
    secret: &str,
) -> Result<Option<KeyWithOwner>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT k.api_key_id, k.user_id, k.name, k.prefix, k.scopes, k.created_at,
                    k.last_used_at, k.expires_at, k.revoked_at,
                    u.roles AS owner_roles, u.status AS owner_status
               FROM api_keys k JOIN users u USING (user_id)
              WHERE k.secret_hash = $1",
        secret_hash(secret),
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| KeyWithOwner {
        key: ApiKeyRow {
            api_key_id: r.api_key_id,
            user_id: r.user_id,
            name: r.name,
            prefix: r.prefix,
            scopes: r.scopes,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        },
        owner_roles: r.owner_roles,
        owner_status: r.owner_status,
    }))
}

/// Sets `last_used_at` to `now` unless a later use already did.
pub async fn touch_last_used(
    db: impl PgExecutor<'_>,
    api_key_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE api_keys SET last_used_at = $2
                  WHERE api_key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        api_key_id,
        now,
    )
    .execute(db)
    .await?;
    Ok(())
}
