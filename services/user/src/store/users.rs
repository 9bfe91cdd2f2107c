//! Accounts: the `users` table (with the account lockout joined in).

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use sqlx::{PgExecutor, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::role::role_values;

#[derive(Debug, Clone)]
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

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: &'a str,
    pub time_zone: &'a str,
    pub locale: &'a str,
}

/// Inserts the account; `None` when the email already has one (nothing is written).
pub async fn insert_user(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewUser<'_>,
) -> Result<Option<UserRow>, sqlx::Error> {
    let user_id = Uuid::now_v7();
    let inserted = sqlx::query!(
        "INSERT INTO users (user_id, email, password_hash, display_name, time_zone, locale)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
        user_id,
        new.email,
        new.password_hash,
        new.display_name,
        new.time_zone,
        new.locale,
    )
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(None);
    }
    user_by_id(&mut **tx, user_id).await
}

pub async fn user_by_id(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<UserRow>, sqlx::Error> {
    // Every account query reads the columns of `UserRow`, with the account lockout (if in
    // force) joined in.
    sqlx::query_as!(
        UserRow,
        "SELECT u.user_id, u.email, u.password_hash, u.display_name,
                u.time_zone, u.locale, u.watchlist, u.roles, u.status, u.created_at, u.updated_at,
                u.last_login_at,
                (SELECT t.locked_until FROM login_throttle t
                  WHERE t.scope = 'account' AND t.key = lower(u.email) AND t.locked_until > now())
                  AS locked_until
           FROM users u
          WHERE u.user_id = $1",
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// The account row locked for update (serialises concurrent changes to one account).
pub async fn user_for_update(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as!(
        UserRow,
        "SELECT u.user_id, u.email, u.password_hash, u.display_name,
                u.time_zone, u.locale, u.watchlist, u.roles, u.status, u.created_at, u.updated_at,
                u.last_login_at,
                (SELECT t.locked_until FROM login_throttle t
                  WHERE t.scope = 'account' AND t.key = lower(u.email) AND t.locked_until > now())
                  AS locked_until
           FROM users u
          WHERE u.user_id = $1 FOR UPDATE OF u",
        user_id,
    )
    .fetch_optional(&mut **tx)
    .await
}

pub async fn user_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as!(
        UserRow,
        "SELECT u.user_id, u.email, u.password_hash, u.display_name,
                u.time_zone, u.locale, u.watchlist, u.roles, u.status, u.created_at, u.updated_at,
                u.last_login_at,
                (SELECT t.locked_until FROM login_throttle t
                  WHERE t.scope = 'account' AND t.key = lower(u.email) AND t.locked_until > now())
                  AS locked_until
           FROM users u
          WHERE lower(u.email) = lower($1)",
        email,
    )
    .fetch_optional(db)
    .await
}

pub async fn set_password_hash(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    phc: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2 WHERE user_id = $1",
        user_id,
        phc
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn touch_login(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET last_login_at = now() WHERE user_id = $1",
        user_id
    )
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
        mirai_platform::db::like_escape(&filter.query.trim().to_lowercase())
    );
    sqlx::query_as!(
        UserRow,
        "SELECT u.user_id, u.email, u.password_hash, u.display_name,
                u.time_zone, u.locale, u.watchlist, u.roles, u.status, u.created_at, u.updated_at,
                u.last_login_at,
                (SELECT t.locked_until FROM login_throttle t
                  WHERE t.scope = 'account' AND t.key = lower(u.email) AND t.locked_until > now())
                  AS locked_until
           FROM users u
          WHERE (lower(u.email) LIKE $1 OR lower(u.display_name) LIKE $1)
            AND ($2::text IS NULL OR $2 = ANY (u.roles))
            AND ($3::text IS NULL OR u.status = $3)
            AND ($4::uuid IS NULL OR u.user_id > $4)
          ORDER BY u.user_id
          LIMIT $5",
        pattern,
        filter.role,
        filter.status,
        filter.after,
        filter.limit,
    )
    .fetch_all(db)
    .await
}

/// Replaces the account's roles.
pub async fn set_roles(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET roles = $2, updated_at = now() WHERE user_id = $1",
        user_id,
        roles
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The profile fields to change; `None` keeps the stored value.
pub struct ProfileUpdate<'a> {
    pub display_name: Option<&'a str>,
    pub time_zone: Option<&'a str>,
    pub locale: Option<&'a str>,
    pub watchlist: Option<&'a [String]>,
}

pub async fn update_profile(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    update: &ProfileUpdate<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET display_name = COALESCE($2, display_name),
                    time_zone = COALESCE($3, time_zone), locale = COALESCE($4, locale),
                    watchlist = COALESCE($5, watchlist), updated_at = now()
              WHERE user_id = $1",
        user_id,
        update.display_name,
        update.time_zone,
        update.locale,
        update.watchlist,
    )
    .execute(db)
    .await?;
    Ok(())
}
