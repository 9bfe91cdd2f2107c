//! The account-deletion saga (`deletion_sagas`, `deletion_participants`) and the erasure of an
//! account.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::throttle;

/// Marks the account `deleting` (no more logins).
pub async fn mark_deleting(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET status = 'deleting', updated_at = now() WHERE user_id = $1",
        user_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_saga(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    correlation_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO deletion_sagas (user_id, correlation_id) VALUES ($1, $2)",
        user_id,
        correlation_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn insert_participant(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    participant: &str,
    position: i16,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO deletion_participants (user_id, participant, position)
             VALUES ($1, $2, $3)",
        user_id,
        participant,
        position,
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct SagaRow {
    pub correlation_id: Uuid,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub status: String,
}

pub struct ParticipantRow {
    pub participant: String,
    pub purged_at: Option<DateTime<Utc>>,
    pub items_purged: i64,
    pub reminders_sent: i32,
    pub last_requested_at: DateTime<Utc>,
}

/// The saga of `user_id` with the account's status; `None` when no deletion was requested.
pub async fn saga(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<Option<SagaRow>, sqlx::Error> {
    sqlx::query_as!(
        SagaRow,
        "SELECT s.correlation_id, s.requested_at, s.completed_at, u.status
           FROM deletion_sagas s JOIN users u USING (user_id) WHERE s.user_id = $1",
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// The saga's participants in their configured order.
pub async fn participants(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Vec<ParticipantRow>, sqlx::Error> {
    sqlx::query_as!(
        ParticipantRow,
        "SELECT participant, purged_at, items_purged, reminders_sent, last_requested_at
           FROM deletion_participants WHERE user_id = $1 ORDER BY position",
        user_id,
    )
    .fetch_all(db)
    .await
}

/// Erases the account: its throttle rows, unlock links, credentials and profile (the row
/// stays as a tombstone), sessions, API keys, the IP and user agent of its audit entries; marks
/// the saga completed.
pub async fn erase(tx: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    let email: String = sqlx::query_scalar!("SELECT email FROM users WHERE user_id = $1", user_id)
        .fetch_one(&mut *tx)
        .await?;
    throttle::clear_account(&mut *tx, &throttle::account_key(&email)).await?;
    sqlx::query!("DELETE FROM unlock_tokens WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "UPDATE users SET status = 'deleted', email = 'deleted-' || user_id || '@invalid',
                password_hash = NULL, display_name = 'deleted', time_zone = 'UTC',
                locale = 'en-US', watchlist = '{}', roles = '{user}', last_login_at = NULL,
                updated_at = now()
          WHERE user_id = $1",
        user_id,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!("DELETE FROM refresh_families WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM api_keys WHERE user_id = $1", user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query!(
        "UPDATE audit_events SET ip = '', user_agent = ''
          WHERE user_id = $1 OR actor_user_id = $1",
        user_id,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE deletion_sagas SET completed_at = now() WHERE user_id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The saga's correlation id.
pub async fn correlation_id(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT correlation_id FROM deletion_sagas WHERE user_id = $1",
        user_id
    )
    .fetch_optional(db)
    .await
}

/// The account's status, its row locked for update; `None` for an unknown account.
pub async fn lock_account_status(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT status FROM users WHERE user_id = $1 FOR UPDATE",
        user_id
    )
    .fetch_optional(db)
    .await
}

/// Records a participant's confirmation; `false` when it was already recorded (or the
/// participant is not part of the saga).
pub async fn record_purged(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    participant: &str,
    items_purged: i64,
) -> Result<bool, sqlx::Error> {
    let recorded = sqlx::query!(
        "UPDATE deletion_participants SET purged_at = now(), items_purged = $3
              WHERE user_id = $1 AND participant = $2 AND purged_at IS NULL",
        user_id,
        participant,
        items_purged,
    )
    .execute(db)
    .await?;
    Ok(recorded.rows_affected() > 0)
}

/// How many participants have not confirmed yet.
pub async fn outstanding(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM deletion_participants
            WHERE user_id = $1 AND purged_at IS NULL"#,
        user_id,
    )
    .fetch_one(db)
    .await
}

/// Participants of unfinished sagas silent for longer than `remind_after`, as (user id,
/// participant, reminders sent, correlation id), grouped by user; at most 500, claimed with
/// `SKIP LOCKED`.
pub async fn stalled(
    db: impl PgExecutor<'_>,
    remind_after: Duration,
) -> Result<Vec<(Uuid, String, i32, Uuid)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT p.user_id, p.participant, p.reminders_sent, s.correlation_id
           FROM deletion_participants p JOIN deletion_sagas s USING (user_id)
          WHERE p.purged_at IS NULL AND s.completed_at IS NULL
            AND p.last_requested_at < now() - make_interval(secs => $1)
          ORDER BY p.user_id, p.position
          LIMIT 500
          FOR UPDATE OF p SKIP LOCKED",
        remind_after.as_secs_f64(),
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.user_id, r.participant, r.reminders_sent, r.correlation_id))
        .collect())
}

/// Counts a reminder sent to `participants` of `user_id`'s saga.
pub async fn mark_reminded(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    participants: &[String],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE deletion_participants
                SET reminders_sent = reminders_sent + 1, last_requested_at = now()
              WHERE user_id = $1 AND participant = ANY ($2)",
        user_id,
        participants,
    )
    .execute(db)
    .await?;
    Ok(())
}
