//! PostgreSQL access (sqlx), one module per table group.

pub mod alerts;
pub mod deliveries;
pub mod emails;
pub mod endpoints;
pub mod market;
pub mod notifications;
pub mod preferences;
pub mod symbols;
pub mod users;

use mirai_proto::notification::v1 as pb;

pub fn category_of(code: i16) -> pb::Category {
    pb::Category::try_from(i32::from(code)).unwrap_or(pb::Category::Unspecified)
}

pub fn channel_of(code: i16) -> pb::Channel {
    pb::Channel::try_from(i32::from(code)).unwrap_or(pb::Channel::Unspecified)
}

/// Serialises a user's count-then-insert of one kind (`scope`) until the transaction ends, so
/// concurrent creates cannot pass a per-user cap together.
pub async fn lock_for_user(
    tx: &mut sqlx::PgConnection,
    scope: &str,
    user_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))",
        scope,
        user_id.to_string()
    )
    .execute(tx)
    .await?;
    Ok(())
}
