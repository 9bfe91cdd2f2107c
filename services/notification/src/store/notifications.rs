//! The `notifications` table.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

/// A stored notification: the columns every query of notifications returns.
#[derive(Debug, Clone)]
pub struct Row {
    pub notification_id: Uuid,
    pub user_id: Uuid,
    pub category: i16,
    pub critical: bool,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub alert_id: Option<Uuid>,
    pub symbol: String,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Row {
    pub fn data_map(&self) -> BTreeMap<String, String> {
        match &self.data {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), text)
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    pub fn to_proto(&self) -> pb::Notification {
        pb::Notification {
            notification_id: self.notification_id.to_string(),
            user_id: self.user_id.to_string(),
            category: i32::from(self.category),
            critical: self.critical,
            title: self.title.clone(),
            body: self.body.clone(),
            data: self.data_map().into_iter().collect(),
            alert_id: self.alert_id.map(|a| a.to_string()).unwrap_or_default(),
            symbol: self.symbol.clone(),
            read: self.read_at.is_some(),
            read_at: self.read_at.map(wire::timestamp),
            created_at: Some(wire::timestamp(self.created_at)),
        }
    }
}

/// A notification to store.
#[derive(Debug, Clone, Default)]
pub struct New {
    pub user_id: Uuid,
    pub category: i16,
    pub critical: bool,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub alert_id: Option<Uuid>,
    pub symbol: String,
    pub in_app: bool,
    pub dedupe_key: Option<String>,
}

/// Stores it; `None` when a notification with the same dedupe key exists.
pub async fn insert(tx: &mut PgConnection, n: &New) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "INSERT INTO notifications (notification_id, user_id, category, critical, title, body,
            data, alert_id, symbol, in_app, dedupe_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (dedupe_key) DO NOTHING
         RETURNING notification_id, user_id, category, critical, title, body, data,
                alert_id, symbol, read_at, created_at",
        Uuid::now_v7(),
        n.user_id,
        n.category,
        n.critical,
        &n.title,
        &n.body,
        &n.data,
        n.alert_id,
        &n.symbol,
        n.in_app,
        n.dedupe_key.as_deref(),
    )
    .fetch_optional(tx)
    .await
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT notification_id, user_id, category, critical, title, body, data,
                alert_id, symbol, read_at, created_at
           FROM notifications WHERE notification_id = $1",
        id,
    )
    .fetch_optional(conn)
    .await
}

pub async fn get_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT notification_id, user_id, category, critical, title, body, data,
                alert_id, symbol, read_at, created_at
           FROM notifications WHERE notification_id = ANY($1) ORDER BY notification_id",
        ids,
    )
    .fetch_all(conn)
    .await
}

/// The user's in-app notifications newer than `after` (by id, which is time-ordered), oldest
/// first, at most `limit`.
pub async fn newer(
    conn: &mut PgConnection,
    user_id: Uuid,
    after: Uuid,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT notification_id, user_id, category, critical, title, body, data,
                alert_id, symbol, read_at, created_at
           FROM notifications
         WHERE user_id = $1 AND in_app AND notification_id > $2
         ORDER BY notification_id LIMIT $3",
        user_id,
        after,
        limit,
    )
    .fetch_all(conn)
    .await
}

/// One page, newest first, after `before` (exclusive) when set.
pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    unread_only: bool,
    categories: &[i16],
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT notification_id, user_id, category, critical, title, body, data,
                alert_id, symbol, read_at, created_at
           FROM notifications
         WHERE user_id = $1 AND in_app AND (NOT $2 OR read_at IS NULL)
           AND (cardinality($3::smallint[]) = 0 OR category = ANY($3))
           AND ($4::uuid IS NULL OR notification_id < $4)
         ORDER BY notification_id DESC LIMIT $5",
        user_id,
        unread_only,
        categories,
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

pub async fn unread_count(conn: &mut PgConnection, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM notifications
            WHERE user_id = $1 AND in_app AND read_at IS NULL"#,
        user_id,
    )
    .fetch_one(conn)
    .await
}

/// The unread counts of `user_ids` (users without unread notifications are left out).
pub async fn unread_counts(
    conn: &mut PgConnection,
    user_ids: &[Uuid],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT user_id, count(*) AS "count!" FROM notifications
            WHERE user_id = ANY($1) AND in_app AND read_at IS NULL
            GROUP BY user_id"#,
        user_ids,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.count)).collect())
}

/// Marks read (or unread); `ids` None means every notification created up to now.
pub async fn mark(
    conn: &mut PgConnection,
    user_id: Uuid,
    ids: Option<&[Uuid]>,
    read: bool,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query!(
        "UPDATE notifications SET read_at = CASE WHEN $3 THEN now() END
         WHERE user_id = $1 AND in_app AND ($2::uuid[] IS NULL OR notification_id = ANY($2))
           AND created_at <= now() AND (read_at IS NULL) = $3",
        user_id,
        ids,
        read,
    )
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
