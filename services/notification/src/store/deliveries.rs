//! The `deliveries` and `delivery_attempts` tables.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

/// A stored delivery: the columns every query of deliveries returns.
#[derive(Debug, Clone)]
pub struct Row {
    pub delivery_id: Uuid,
    pub user_id: Uuid,
    pub notification_id: Uuid,
    pub channel: i16,
    pub target: String,
    pub status: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub digest: bool,
    pub last_error: String,
    pub resend_of: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: Uuid,
    pub attempt: i32,
    pub outcome: i16,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub response_code: i32,
    pub error: String,
}

pub fn status_of(text: &str) -> pb::DeliveryStatus {
    match text {
        "QUEUED" => pb::DeliveryStatus::Queued,
        "SENT" => pb::DeliveryStatus::Sent,
        "DELIVERED" => pb::DeliveryStatus::Delivered,
        "RETRYING" => pb::DeliveryStatus::Retrying,
        "FAILED" => pb::DeliveryStatus::Failed,
        "DEFERRED" => pb::DeliveryStatus::Deferred,
        "SUPPRESSED" => pb::DeliveryStatus::Suppressed,
        _ => pb::DeliveryStatus::Unspecified,
    }
}

pub fn status_name(status: pb::DeliveryStatus) -> Option<&'static str> {
    Some(match status {
        pb::DeliveryStatus::Queued => "QUEUED",
        pb::DeliveryStatus::Sent => "SENT",
        pb::DeliveryStatus::Delivered => "DELIVERED",
        pb::DeliveryStatus::Retrying => "RETRYING",
        pb::DeliveryStatus::Failed => "FAILED",
        pb::DeliveryStatus::Deferred => "DEFERRED",
        pb::DeliveryStatus::Suppressed => "SUPPRESSED",
        pb::DeliveryStatus::Unspecified => return None,
    })
}

impl Row {
    pub fn to_proto(&self, attempts: Vec<pb::DeliveryAttempt>) -> pb::Delivery {
        let pending = matches!(self.status.as_str(), "QUEUED" | "RETRYING" | "DEFERRED");
        pb::Delivery {
            delivery_id: self.delivery_id.to_string(),
            user_id: self.user_id.to_string(),
            notification_id: self.notification_id.to_string(),
            channel: i32::from(self.channel),
            target: self.target.clone(),
            status: status_of(&self.status).into(),
            attempts,
            next_attempt_at: self
                .next_attempt_at
                .filter(|_| pending)
                .map(wire::timestamp),
            created_at: Some(wire::timestamp(self.created_at)),
            updated_at: Some(wire::timestamp(self.updated_at)),
            resend_of: self.resend_of.map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

impl Attempt {
    pub fn to_proto(&self) -> pb::DeliveryAttempt {
        pb::DeliveryAttempt {
            attempt: self.attempt.max(0) as u32,
            outcome: i32::from(self.outcome),
            started_at: Some(wire::timestamp(self.started_at)),
            duration: Some(prost_types::Duration {
                seconds: self.duration_ms / 1000,
                nanos: ((self.duration_ms % 1000) * 1_000_000) as i32,
            }),
            response_code: self.response_code,
            error: self.error.clone(),
        }
    }
}

/// A delivery to create.
#[derive(Debug, Clone)]
pub struct New {
    pub user_id: Uuid,
    pub notification_id: Uuid,
    pub channel: pb::Channel,
    pub target: String,
    pub status: &'static str,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub digest: bool,
    pub last_error: String,
    pub resend_of: Option<Uuid>,
}

/// Inserts it; `None` when this notification already has its delivery on this channel and
/// target (the unique index makes the fan-out idempotent).
pub async fn insert(tx: &mut PgConnection, d: &New) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "INSERT INTO deliveries (delivery_id, user_id, notification_id, channel, target, status,
            next_attempt_at, digest, last_error, resend_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT DO NOTHING
         RETURNING delivery_id, user_id, notification_id, channel, target, status,
                next_attempt_at, attempts, digest, last_error, resend_of, created_at, updated_at",
        Uuid::now_v7(),
        d.user_id,
        d.notification_id,
        d.channel as i16,
        &d.target,
        d.status,
        d.next_attempt_at,
        d.digest,
        &d.last_error,
        d.resend_of,
    )
    .fetch_optional(tx)
    .await
}

pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT delivery_id, user_id, notification_id, channel, target, status,
                next_attempt_at, attempts, digest, last_error, resend_of, created_at, updated_at
           FROM deliveries WHERE delivery_id = $1 AND user_id = $2",
        id,
        user_id,
    )
    .fetch_optional(conn)
    .await
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub target: Option<String>,
    pub notification_id: Option<Uuid>,
    pub channel: Option<i16>,
    pub statuses: Vec<String>,
}

pub async fn list(
    conn: &mut PgConnection,
    user_id: Uuid,
    filter: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT delivery_id, user_id, notification_id, channel, target, status,
                next_attempt_at, attempts, digest, last_error, resend_of, created_at, updated_at
           FROM deliveries
         WHERE user_id = $1 AND ($2::text IS NULL OR target = $2)
           AND ($3::uuid IS NULL OR notification_id = $3)
           AND ($4::smallint IS NULL OR channel = $4)
           AND (cardinality($5::text[]) = 0 OR status = ANY($5))
           AND ($6::uuid IS NULL OR delivery_id < $6)
         ORDER BY delivery_id DESC LIMIT $7",
        user_id,
        filter.target.as_deref(),
        filter.notification_id,
        filter.channel,
        &filter.statuses,
        before,
        limit,
    )
    .fetch_all(conn)
    .await
}

pub async fn attempts_of(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as!(
        Attempt,
        "SELECT delivery_id, attempt, outcome, started_at, duration_ms, response_code, error
         FROM delivery_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt",
        ids,
    )
    .fetch_all(conn)
    .await
}

/// Records one attempt (the columns of `delivery_attempts`, in order).
#[allow(clippy::too_many_arguments)]
pub async fn record_attempt(
    tx: &mut PgConnection,
    delivery_id: Uuid,
    attempt: i32,
    outcome: pb::AttemptOutcome,
    started_at: DateTime<Utc>,
    duration_ms: i64,
    response_code: i32,
    error: &str,
) -> Result<(), sqlx::Error> {
    let error: String = error.chars().take(500).collect();
    sqlx::query!(
        "INSERT INTO delivery_attempts (delivery_id, attempt, outcome, started_at, duration_ms,
            response_code, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        delivery_id,
        attempt,
        outcome as i16,
        started_at,
        duration_ms,
        response_code,
        error,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Leases up to `limit` due deliveries (QUEUED, RETRYING, DEFERRED) for `lease`, skipping rows
/// another worker holds.
pub async fn claim(
    tx: &mut PgConnection,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $2)
             WHERE delivery_id IN (
                 SELECT delivery_id FROM deliveries
                 WHERE status IN ('QUEUED', 'RETRYING', 'DEFERRED') AND next_attempt_at <= now()
                 ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING delivery_id, user_id, notification_id, channel, target, status,
                next_attempt_at, attempts, digest, last_error, resend_of, created_at, updated_at",
        limit,
        lease.as_secs_f64(),
    )
    .fetch_all(tx)
    .await
}

/// Writes an attempt's result: the status, the count, the next attempt and the error.
pub async fn set_result(
    tx: &mut PgConnection,
    delivery_id: Uuid,
    status: &str,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE deliveries SET status = $2, attempts = $3, next_attempt_at = $4,
                    last_error = $5, updated_at = now()
                 WHERE delivery_id = $1",
        delivery_id,
        status,
        attempts,
        next_attempt_at,
        error,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// The user's pending deliveries to a deleted webhook endpoint end FAILED, kept in the log.
pub async fn fail_for_deleted_endpoint(
    tx: &mut PgConnection,
    user_id: Uuid,
    endpoint_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE deliveries SET status = 'FAILED', last_error = 'the endpoint was deleted',
                    next_attempt_at = NULL, updated_at = now()
                 WHERE user_id = $1 AND channel = $2 AND target = $3
                   AND status IN ('QUEUED', 'RETRYING', 'DEFERRED')",
        user_id,
        pb::Channel::Webhook as i16,
        endpoint_id.to_string(),
    )
    .execute(tx)
    .await?;
    Ok(())
}
