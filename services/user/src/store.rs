//! PostgreSQL access: accounts, refresh-token families, brute-force counters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

use crate::config::LockoutConfig;
use crate::domain;
use crate::tokens::{new_secret, secret_hash};

// === Accounts ===

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: Uuid,
    pub email: String,
    pub password_hash: Option<String>,
    pub display_name: String,
    pub time_zone: String,
    pub locale: String,
    pub watchlist: Vec<String>,
    pub roles: Vec<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    pub locked_until: Option<DateTime<Utc>>,
}

impl UserRow {
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

fn status_of(name: &str) -> pb::AccountStatus {
    match name {
        "active" => pb::AccountStatus::Active,
        "deleting" => pb::AccountStatus::Deleting,
        "deleted" => pb::AccountStatus::Deleted,
        _ => pb::AccountStatus::Unspecified,
    }
}

impl From<UserRow> for pb::User {
    fn from(row: UserRow) -> Self {
        Self {
            user_id: row.user_id.to_string(),
            email: row.email,
            display_name: row.display_name,
            time_zone: row.time_zone,
            locale: row.locale,
            watchlist: row.watchlist,
            roles: role_values(&row.roles),
            status: status_of(&row.status).into(),
            created_at: Some(wire::timestamp(row.created_at)),
            updated_at: Some(wire::timestamp(row.updated_at)),
            last_login_at: row.last_login_at.map(wire::timestamp),
            locked_until: row.locked_until.map(wire::timestamp),
        }
    }
}

/// Roles in their wire form, in a stable order.
pub fn role_values(roles: &[String]) -> Vec<i32> {
    let mut values: Vec<i32> = roles.iter().map(|r| domain::role_of(r) as i32).collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// The account columns, with the account lockout (if in force) joined in.
const USER_SELECT: &str = "SELECT u.user_id, u.email, u.password_hash, u.display_name, \
     u.time_zone, u.locale, u.watchlist, u.roles, u.status, u.created_at, u.updated_at, \
     u.last_login_at, \
     (SELECT t.locked_until FROM login_throttle t \
       WHERE t.scope = 'account' AND t.key = lower(u.email) AND t.locked_until > now()) \
       AS locked_until \
     FROM users u";

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: &'a str,
    pub time_zone: &'a str,
    pub locale: &'a str,
}

pub async fn insert_user(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewUser<'_>,
) -> Result<UserRow, sqlx::Error> {
    let user_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO users (user_id, email, password_hash, display_name, time_zone, locale)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(user_id)
    .bind(new.email)
    .bind(new.password_hash)
    .bind(new.display_name)
    .bind(new.time_zone)
    .bind(new.locale)
    .execute(&mut **tx)
    .await?;
    user_by_id(&mut **tx, user_id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)
}

pub async fn user_by_id(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{USER_SELECT} WHERE u.user_id = $1"
    )))
    .bind(user_id)
    .fetch_optional(db)
    .await
}

/// The account row locked for update (serialises concurrent changes to one account).
pub async fn user_for_update(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{USER_SELECT} WHERE u.user_id = $1 FOR UPDATE OF u"
    )))
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn user_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{USER_SELECT} WHERE lower(u.email) = lower($1)"
    )))
    .bind(email)
    .fetch_optional(db)
    .await
}

pub async fn set_password_hash(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    phc: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
        .bind(user_id)
        .bind(phc)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn touch_login(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE users SET last_login_at = now() WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(())
}

pub struct UserFilter {
    pub query: String,
    pub role: Option<&'static str>,
    pub status: Option<&'static str>,
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Accounts oldest first (UUIDv7 ids sort by creation time).
pub async fn list_users(
    db: impl PgExecutor<'_>,
    filter: &UserFilter,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let pattern = format!(
        "{}%",
        filter
            .query
            .trim()
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{USER_SELECT}
          WHERE (lower(u.email) LIKE $1 OR lower(u.display_name) LIKE $1)
            AND ($2::text IS NULL OR $2 = ANY (u.roles))
            AND ($3::text IS NULL OR u.status = $3)
            AND ($4::uuid IS NULL OR u.user_id > $4)
          ORDER BY u.user_id
          LIMIT $5"
    )))
    .bind(pattern)
    .bind(filter.role)
    .bind(filter.status)
    .bind(filter.after)
    .bind(filter.limit)
    .fetch_all(db)
    .await
}

// === Refresh-token families ===

/// A newly issued refresh token (the secret exists only here and in the response).
pub struct IssuedRefresh {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

fn interval(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
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
    sqlx::query(
        "INSERT INTO refresh_families (family_id, user_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(family_id)
    .bind(user_id)
    .bind(now)
    .bind(family_expires)
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
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(secret_hash(&secret))
    .bind(family_id)
    .bind(now)
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(IssuedRefresh { secret, expires_at })
}

/// A presented refresh token with its family, locked for update.
#[derive(sqlx::FromRow)]
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
    sqlx::query_as(
        "SELECT t.family_id, f.user_id, t.expires_at AS token_expires_at, t.used_at,
                f.expires_at AS family_expires_at, f.revoked_at AS family_revoked_at
           FROM refresh_tokens t JOIN refresh_families f USING (family_id)
          WHERE t.token_hash = $1
          FOR UPDATE OF t, f",
    )
    .bind(secret_hash(secret))
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
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1")
        .bind(secret_hash(secret))
        .bind(now)
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
    let done = sqlx::query(
        "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $2
          WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .bind(reason)
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
    let done = sqlx::query(
        "UPDATE refresh_families SET revoked_at = now(), revoke_reason = $2
          WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(reason)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

// === Brute-force throttle ===

/// Counter scope.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Account,
    Ip,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::Account => "account",
            Self::Ip => "ip",
        }
    }
}

/// The account throttle key of an email: lower-cased, as the unique index compares.
pub fn account_key(email: &str) -> String {
    email.to_lowercase()
}

/// The latest lockout in force for the account key or the IP (empty IP: none), if any.
pub async fn locked_until(
    db: impl PgExecutor<'_>,
    account: &str,
    ip: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let row: (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT max(locked_until) FROM login_throttle
          WHERE locked_until > $3
            AND ((scope = 'account' AND key = $1) OR (scope = 'ip' AND key = $2 AND $2 <> ''))",
    )
    .bind(account)
    .bind(ip)
    .bind(now)
    .fetch_one(db)
    .await?;
    Ok(row.0)
}

/// Counts a failure; when it reaches `threshold` within the window, starts a lockout of
/// `base · 2^(earlier lockouts)` capped at `max`, and returns its end.
pub async fn record_failure(
    db: &sqlx::PgPool,
    scope: Scope,
    key: &str,
    threshold: u32,
    config: &LockoutConfig,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let window_start = now - interval(config.window);
    // A key whose last lockout ended long ago (more than `max` plus the window) starts its
    // growth again from `base`.
    let forgive_before = now - interval(config.max) - interval(config.window);
    let (failures,): (i32,) = sqlx::query_as(
        "INSERT INTO login_throttle AS t (scope, key, failures, window_start)
         VALUES ($1, $2, 1, $3)
         ON CONFLICT (scope, key) DO UPDATE SET
            failures = CASE WHEN t.window_start < $4 THEN 1 ELSE t.failures + 1 END,
            lockouts = CASE WHEN t.locked_until < $5 THEN 0 ELSE t.lockouts END,
            window_start = CASE WHEN t.window_start < $4 THEN $3 ELSE t.window_start END
         RETURNING failures",
    )
    .bind(scope.as_str())
    .bind(key)
    .bind(now)
    .bind(window_start)
    .bind(forgive_before)
    .fetch_one(db)
    .await?;
    if failures < threshold as i32 {
        return Ok(None);
    }
    // The `failures >= threshold` guard lets exactly one of several racing failures start the
    // lockout.
    let locked: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "UPDATE login_throttle SET
            failures = 0,
            window_start = $3,
            locked_until = $3 + make_interval(secs => LEAST($5 * power(2, lockouts), $6)),
            lockouts = lockouts + 1
          WHERE scope = $1 AND key = $2 AND failures >= $4
          RETURNING locked_until",
    )
    .bind(scope.as_str())
    .bind(key)
    .bind(now)
    .bind(threshold as i32)
    .bind(config.base.as_secs_f64())
    .bind(config.max.as_secs_f64())
    .fetch_optional(db)
    .await?;
    Ok(locked.map(|(until,)| until))
}

/// Forgets an account's failures and lockout (successful login, admin unlock).
pub async fn clear_account(db: impl PgExecutor<'_>, account: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM login_throttle WHERE scope = 'account' AND key = $1")
        .bind(account)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}
