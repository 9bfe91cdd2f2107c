//! The `preferences` table (one protobuf-encoded `Preferences` per user).

use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use prost::Message as _;
use sqlx::PgConnection;
use uuid::Uuid;

/// The user's preferences and when they last changed; defaults (empty) when never set.
pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(pb::Preferences, Option<DateTime<Utc>>), sqlx::Error> {
    let row: Option<(Vec<u8>, DateTime<Utc>)> = sqlx::query!(
        "SELECT preferences, updated_at FROM preferences WHERE user_id = $1",
        user_id,
    )
    .fetch_optional(conn)
    .await?
    .map(|r| (r.preferences, r.updated_at));
    Ok(match row {
        Some((bytes, at)) => (
            pb::Preferences::decode(bytes.as_slice()).unwrap_or_default(),
            Some(at),
        ),
        None => (pb::Preferences::default(), None),
    })
}

pub async fn put(
    conn: &mut PgConnection,
    user_id: Uuid,
    preferences: &pb::Preferences,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let mut stored = preferences.clone();
    stored.user_id = String::new();
    stored.updated_at = None;
    sqlx::query_scalar!(
        "INSERT INTO preferences (user_id, preferences) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET preferences = EXCLUDED.preferences, updated_at = now()
         RETURNING updated_at",
        user_id,
        stored.encode_to_vec(),
    )
    .fetch_one(conn)
    .await
}
