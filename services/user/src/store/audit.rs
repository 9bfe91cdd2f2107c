//! The security audit log: writing entries (in the caller's transaction where there is one) and
//! querying them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::user::v1 as pb;
use sqlx::PgExecutor;
use uuid::Uuid;

/// The stored name of an audit kind.
pub fn kind_name(kind: pb::AuditEventKind) -> &'static str {
    use pb::AuditEventKind as K;
    match kind {
        K::Unspecified => "unspecified",
        K::Registered => "registered",
        K::LoginSucceeded => "login_succeeded",
        K::LoginFailed => "login_failed",
        K::LockedOut => "locked_out",
        K::Unlocked => "unlocked",
        K::RefreshTokenReused => "refresh_token_reused",
        K::LoggedOut => "logged_out",
        K::PasswordChanged => "password_changed",
        K::RoleChanged => "role_changed",
        K::ApiKeyCreated => "api_key_created",
        K::ApiKeyRevoked => "api_key_revoked",
        K::ApiKeyRejected => "api_key_rejected",
        K::DeletionRequested => "deletion_requested",
        K::Deleted => "deleted",
        K::RegistrationAttempted => "registration_attempted",
    }
}

fn kind_of(name: &str) -> pb::AuditEventKind {
    // Every kind the proto defines (numbered from 1 without gaps), not a hand-kept range.
    (1..)
        .map_while(|v| pb::AuditEventKind::try_from(v).ok())
        .find(|k| kind_name(*k) == name)
        .unwrap_or(pb::AuditEventKind::Unspecified)
}

/// One entry to write.
pub struct Entry<'a> {
    pub kind: pb::AuditEventKind,
    pub user_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub client: Option<&'a pb::ClientContext>,
    pub details: Vec<(&'static str, String)>,
}

impl<'a> Entry<'a> {
    pub fn new(kind: pb::AuditEventKind, client: Option<&'a pb::ClientContext>) -> Self {
        Self {
            kind,
            user_id: None,
            actor_user_id: None,
            client,
            details: Vec::new(),
        }
    }

    pub fn user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }

    pub fn actor(mut self, actor: Uuid) -> Self {
        self.actor_user_id = Some(actor);
        self
    }

    pub fn detail(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.details.push((key, value.into()));
        self
    }

    pub async fn write(self, db: impl PgExecutor<'_>) -> Result<(), sqlx::Error> {
        let client = self.client.cloned().unwrap_or_default();
        let details: BTreeMap<&str, String> = self.details.into_iter().collect();
        // Caller-supplied strings are bounded so the log cannot be used to store bulk data.
        let clip = |s: &str, n: usize| s.chars().take(n).collect::<String>();
        sqlx::query!(
            "INSERT INTO audit_events
                (audit_event_id, kind, user_id, actor_user_id, ip, user_agent, request_id, details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            Uuid::now_v7(),
            kind_name(self.kind),
            self.user_id,
            self.actor_user_id,
            clip(&client.ip, 64),
            clip(&client.user_agent, 512),
            clip(&client.request_id, 128),
            // JSONB: the macro's parameter type is serde_json::Value; the map encodes the same.
            sqlx::types::Json(details) as _,
        )
        .execute(db)
        .await?;
        Ok(())
    }
}

/// Whether `user_id` has an entry of `kind` newer than `since`.
pub async fn recorded_since(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    kind: pb::AuditEventKind,
    since: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM audit_events
                         WHERE user_id = $1 AND kind = $2 AND occurred_at > $3) AS "exists!""#,
        user_id,
        kind_name(kind),
        since,
    )
    .fetch_one(db)
    .await
}

pub struct AuditRow {
    pub audit_event_id: Uuid,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub details: sqlx::types::Json<BTreeMap<String, String>>,
    pub occurred_at: DateTime<Utc>,
}

impl From<AuditRow> for pb::AuditEvent {
    fn from(row: AuditRow) -> Self {
        Self {
            audit_event_id: row.audit_event_id.to_string(),
            kind: kind_of(&row.kind).into(),
            user_id: row.user_id.map(|u| u.to_string()).unwrap_or_default(),
            actor_user_id: row.actor_user_id.map(|u| u.to_string()).unwrap_or_default(),
            ip: row.ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
            details: row.details.0.into_iter().collect(),
            occurred_at: Some(wire::timestamp(row.occurred_at)),
        }
    }
}

/// Filters of a query; `after` is the last id of the previous page (newest first).
pub struct Query {
    pub user_id: Option<Uuid>,
    pub actor_user_id: Option<Uuid>,
    pub kinds: Vec<String>,
    pub ip: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub after: Option<Uuid>,
    pub limit: i64,
}

pub async fn query(db: impl PgExecutor<'_>, q: &Query) -> Result<Vec<AuditRow>, sqlx::Error> {
    sqlx::query_as!(
        AuditRow,
        r#"SELECT audit_event_id, kind, user_id, actor_user_id, ip, user_agent, request_id,
                details AS "details: sqlx::types::Json<BTreeMap<String, String>>", occurred_at
           FROM audit_events
          WHERE ($1::uuid IS NULL OR user_id = $1)
            AND ($2::uuid IS NULL OR actor_user_id = $2)
            AND (cardinality($3::text[]) = 0 OR kind = ANY ($3))
            AND ($4::text IS NULL OR ip = $4)
            AND ($5::timestamptz IS NULL OR occurred_at >= $5)
            AND ($6::timestamptz IS NULL OR occurred_at < $6)
            AND ($7::uuid IS NULL OR audit_event_id < $7)
          ORDER BY audit_event_id DESC
          LIMIT $8"#,
        q.user_id,
        q.actor_user_id,
        &q.kinds,
        q.ip.as_deref(),
        q.since,
        q.until,
        q.after,
        q.limit,
    )
    .fetch_all(db)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored kind reads back as itself — `registration_attempted` (15) once read back as
    /// unspecified, when the lookup stopped at 14.
    #[test]
    fn every_kind_reads_back_as_itself() {
        let mut seen = 0;
        for value in 1..=i32::from(u8::MAX) {
            let Ok(kind) = pb::AuditEventKind::try_from(value) else {
                continue;
            };
            assert_eq!(kind_of(kind_name(kind)), kind, "{kind:?}");
            seen += 1;
        }
        assert!(seen >= 15, "{seen} kinds");
    }
}
