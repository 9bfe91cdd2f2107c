//! The users read model, fed by the user service's events (never its database).

use mirai_proto::user::v1::Role;
use sqlx::PgConnection;
use uuid::Uuid;

/// What this service knows about a user.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub user_id: Uuid,
    pub email: String,
    pub display_name: String,
    pub time_zone: String,
    pub locale: String,
    pub roles: Vec<String>,
}

pub fn role_name(role: i32) -> Option<&'static str> {
    match Role::try_from(role).ok()? {
        Role::User => Some("user"),
        Role::Premium => Some("premium"),
        Role::Admin => Some("admin"),
        Role::Unspecified => None,
    }
}

pub fn role_names(roles: &[i32]) -> Vec<String> {
    let mut names: Vec<String> = roles
        .iter()
        .filter_map(|r| role_name(*r))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

pub async fn upsert_registered(
    tx: &mut PgConnection,
    profile: &Profile,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO users (user_id, email, display_name, time_zone, locale, roles)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id) DO UPDATE SET email = EXCLUDED.email,
            display_name = EXCLUDED.display_name, time_zone = EXCLUDED.time_zone,
            locale = EXCLUDED.locale, roles = EXCLUDED.roles, updated_at = now()",
        profile.user_id,
        &profile.email,
        &profile.display_name,
        &profile.time_zone,
        &profile.locale,
        &profile.roles,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Replaces a user's roles (a role change may arrive before registration is seen; the row is
/// created then and filled in by the registration).
pub async fn set_roles(
    tx: &mut PgConnection,
    user_id: Uuid,
    roles: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO users (user_id, roles) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET roles = EXCLUDED.roles, updated_at = now()",
        user_id,
        roles,
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<Profile>, sqlx::Error> {
    sqlx::query_as!(
        Profile,
        "SELECT user_id, email, display_name, time_zone, locale, roles FROM users WHERE user_id = $1",
        user_id,
    )
    .fetch_optional(conn)
    .await
}

/// Every admin (recipients of system notifications).
pub async fn admins(conn: &mut PgConnection) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!("SELECT user_id FROM users WHERE roles @> ARRAY['admin'] ORDER BY user_id")
        .fetch_all(conn)
        .await
}

/// Deletes every row of the user in every table of the service; returns the rows removed.
pub async fn purge(tx: &mut PgConnection, user_id: Uuid) -> Result<u64, sqlx::Error> {
    let mut removed = 0;
    removed += sqlx::query!("DELETE FROM alerts WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!(
        "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT delivery_id FROM deliveries WHERE user_id = $1)",
        user_id,
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    removed += sqlx::query!("DELETE FROM deliveries WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!("DELETE FROM notifications WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!("DELETE FROM webhook_endpoints WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!("DELETE FROM push_devices WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!("DELETE FROM preferences WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!(
        "DELETE FROM email_verification_sends WHERE user_id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    removed += sqlx::query!("DELETE FROM email_addresses WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    removed += sqlx::query!("DELETE FROM users WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(removed)
}
