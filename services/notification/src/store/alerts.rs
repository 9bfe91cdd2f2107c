//! The `alerts` table.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::notification::v1 as pb;
use mirai_proto::stock::v1::Timeframe;
use prost::Message as _;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::alert::{Frequency, Rule, State, Status};
use crate::domain::condition::{Arm, Condition};
use crate::domain::template::Template;

/// One stored alert: the columns every query of alerts returns.
#[derive(Debug, Clone)]
pub struct Row {
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub name: String,
    pub condition: Vec<u8>,
    pub frequency: i16,
    pub bar_timeframe: i16,
    pub cooldown_secs: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub message_template: String,
    pub channels: Vec<i16>,
    pub webhook_endpoint_ids: Vec<Uuid>,
    pub enabled: bool,
    pub status: String,
    pub status_reason: String,
    pub armed_up: bool,
    pub armed_down: bool,
    pub move_ref_at: Option<DateTime<Utc>>,
    pub last_fired_bar: Option<DateTime<Utc>>,
    pub trigger_count: i32,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub state_version: i64,
    pub rule_version: i32,
    pub saga_attempt: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
}

impl Row {
    pub fn status(&self) -> Status {
        self.status.parse().unwrap_or(Status::Disabled)
    }

    pub fn condition(&self) -> anyhow::Result<Condition> {
        let wire = pb::Condition::decode(self.condition.as_slice())?;
        Ok(Condition::parse(&wire)?)
    }

    pub fn timeframe(&self) -> Timeframe {
        match Timeframe::try_from(i32::from(self.bar_timeframe)) {
            Ok(Timeframe::Unspecified) | Err(_) => Timeframe::OneDay,
            Ok(tf) => tf,
        }
    }

    pub fn rule(&self) -> anyhow::Result<Rule> {
        Ok(Rule {
            condition: self.condition()?,
            frequency: Frequency::from_proto(i32::from(self.frequency)).unwrap_or(Frequency::Once),
            timeframe: self.timeframe(),
            cooldown: Duration::from_secs(self.cooldown_secs.max(0) as u64),
        })
    }

    pub fn template(&self) -> Option<Template> {
        if self.message_template.is_empty() {
            None
        } else {
            Template::parse(&self.message_template).ok()
        }
    }

    pub fn channels(&self) -> Vec<pb::Channel> {
        self.channels
            .iter()
            .filter_map(|c| pb::Channel::try_from(i32::from(*c)).ok())
            .collect()
    }

    pub fn state(&self) -> State {
        State {
            arm: Arm {
                up: self.armed_up,
                down: self.armed_down,
            },
            move_ref_at: self.move_ref_at,
            last_fired_bar: self.last_fired_bar,
            last_triggered_at: self.last_triggered_at,
            trigger_count: self.trigger_count.max(0) as u32,
        }
    }

    pub fn to_proto(&self) -> pb::Alert {
        let condition = pb::Condition::decode(self.condition.as_slice()).ok();
        let armed = self.armed_up || self.armed_down;
        pb::Alert {
            alert_id: self.alert_id.to_string(),
            user_id: self.user_id.to_string(),
            symbol: self.symbol.clone(),
            name: self.name.clone(),
            condition,
            frequency: i32::from(self.frequency),
            bar_timeframe: self.timeframe().into(),
            cooldown: Some(prost_types::Duration {
                seconds: self.cooldown_secs,
                nanos: 0,
            }),
            expires_at: self.expires_at.map(wire::timestamp),
            message_template: self.message_template.clone(),
            channels: self.channels.iter().map(|c| i32::from(*c)).collect(),
            webhook_endpoint_ids: self
                .webhook_endpoint_ids
                .iter()
                .map(Uuid::to_string)
                .collect(),
            enabled: Some(self.enabled),
            status: self.status().to_proto().into(),
            status_reason: self.status_reason.clone(),
            armed: self.status() == Status::Active && armed,
            trigger_count: self.trigger_count.max(0) as u32,
            last_triggered_at: self.last_triggered_at.map(wire::timestamp),
            created_at: Some(wire::timestamp(self.created_at)),
            updated_at: Some(wire::timestamp(self.updated_at)),
            activated_at: self.activated_at.map(wire::timestamp),
        }
    }
}

/// A new alert, validated.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub symbol: String,
    pub name: String,
    pub condition: Condition,
    pub frequency: Frequency,
    pub timeframe: Timeframe,
    pub cooldown: Duration,
    pub expires_at: Option<DateTime<Utc>>,
    pub message_template: String,
    pub channels: Vec<pb::Channel>,
    pub webhook_endpoint_ids: Vec<Uuid>,
    pub enabled: bool,
    pub saga_next_at: Option<DateTime<Utc>>,
}

pub fn channel_codes(channels: &[pb::Channel]) -> Vec<i16> {
    channels.iter().map(|c| *c as i16).collect()
}

pub async fn insert(tx: &mut PgConnection, alert: &NewAlert) -> Result<Row, sqlx::Error> {
    let status = if alert.enabled {
        Status::Pending
    } else {
        Status::Disabled
    };
    let reason = if alert.enabled { "" } else { "switched off" };
    sqlx::query_as!(
        Row,
        "INSERT INTO alerts (alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
            cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids, enabled,
            status, status_reason, saga_next_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         RETURNING alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at",
        alert.alert_id,
        alert.user_id,
        &alert.symbol,
        &alert.name,
        alert.condition.to_proto().encode_to_vec(),
        alert.frequency.to_proto() as i16,
        alert.timeframe as i16,
        alert.cooldown.as_secs() as i64,
        alert.expires_at,
        &alert.message_template,
        &channel_codes(&alert.channels),
        &alert.webhook_endpoint_ids,
        alert.enabled,
        status.as_str(),
        reason,
        alert.saga_next_at.filter(|_| alert.enabled),
    )
    .fetch_one(tx)
    .await
}

/// One alert of one user, locked for update when `lock`.
pub async fn get(
    conn: &mut PgConnection,
    user_id: Uuid,
    alert_id: Uuid,
    lock: bool,
) -> Result<Option<Row>, sqlx::Error> {
    if lock {
        sqlx::query_as!(
            Row,
            "SELECT alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at
               FROM alerts WHERE alert_id = $1 AND user_id = $2 FOR UPDATE",
            alert_id,
            user_id,
        )
        .fetch_optional(conn)
        .await
    } else {
        sqlx::query_as!(
            Row,
            "SELECT alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at
               FROM alerts WHERE alert_id = $1 AND user_id = $2",
            alert_id,
            user_id,
        )
        .fetch_optional(conn)
        .await
    }
}

/// One alert by id, locked (saga handlers, which do not know the owner).
pub async fn lock(conn: &mut PgConnection, alert_id: Uuid) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at
           FROM alerts WHERE alert_id = $1 FOR UPDATE",
        alert_id,
    )
    .fetch_optional(conn)
    .await
}

/// Live alerts of a user, after serialising concurrent creators of the same user.
pub async fn count_live_locked(tx: &mut PgConnection, user_id: Uuid) -> Result<i64, sqlx::Error> {
    super::lock_for_user(tx, "mirai_alerts_user", user_id).await?;
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM alerts
            WHERE user_id = $1 AND status IN ('PENDING', 'ACTIVE')"#,
        user_id,
    )
    .fetch_one(tx)
    .await
}

/// Moves an alert to `status` with `reason`, clearing saga bookkeeping when it leaves PENDING.
pub async fn set_status(
    tx: &mut PgConnection,
    alert_id: Uuid,
    status: Status,
    reason: &str,
) -> Result<Row, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "UPDATE alerts SET status = $2, status_reason = $3, updated_at = now(),
            saga_next_at = CASE WHEN $2 = 'PENDING' THEN saga_next_at END,
            activated_at = CASE WHEN $2 = 'ACTIVE' THEN now() ELSE activated_at END
         WHERE alert_id = $1
         RETURNING alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at",
        alert_id,
        status.as_str(),
        reason,
    )
    .fetch_one(tx)
    .await
}

/// Activates a PENDING alert with its condition's initial arm state.
pub async fn activate(tx: &mut PgConnection, row: &Row) -> anyhow::Result<Row> {
    let arm = row.condition()?.initial_arm();
    let row = sqlx::query_as!(
        Row,
        "UPDATE alerts SET status = 'ACTIVE', status_reason = '', activated_at = now(),
            updated_at = now(), saga_next_at = NULL, armed_up = $2, armed_down = $3,
            move_ref_at = NULL, state_version = state_version + 1
         WHERE alert_id = $1
         RETURNING alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at",
        row.alert_id,
        arm.up,
        arm.down,
    )
    .fetch_one(tx)
    .await?;
    Ok(row)
}

/// Puts an alert back to PENDING for a new activation request (re-enabled, retried).
pub async fn restart_saga(
    tx: &mut PgConnection,
    alert_id: Uuid,
    next_at: DateTime<Utc>,
) -> Result<Row, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "UPDATE alerts SET status = 'PENDING', status_reason = '', saga_attempt = 0,
            saga_next_at = $2, updated_at = now()
         WHERE alert_id = $1
         RETURNING alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at",
        alert_id,
        next_at,
    )
    .fetch_one(tx)
    .await
}

/// A state to store after an evaluation (see [`store_states`]).
pub struct NewState<'a> {
    pub alert_id: Uuid,
    /// The `state_version` the evaluation read.
    pub expected_version: i64,
    pub state: &'a State,
    /// The alert fired for the last time (frequency once): it becomes TRIGGERED.
    pub finished: bool,
}

/// Stores the states after an evaluation, each only if nobody else changed it since it was
/// read (`state_version`), in one statement. Returns the alerts that were not stored because
/// of a concurrent change.
pub async fn store_states(
    tx: &mut PgConnection,
    states: &[NewState<'_>],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if states.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = states.iter().map(|s| s.alert_id).collect();
    let versions: Vec<i64> = states.iter().map(|s| s.expected_version).collect();
    let up: Vec<bool> = states.iter().map(|s| s.state.arm.up).collect();
    let down: Vec<bool> = states.iter().map(|s| s.state.arm.down).collect();
    let move_ref: Vec<Option<DateTime<Utc>>> = states.iter().map(|s| s.state.move_ref_at).collect();
    let fired_bar: Vec<Option<DateTime<Utc>>> =
        states.iter().map(|s| s.state.last_fired_bar).collect();
    let triggered_at: Vec<Option<DateTime<Utc>>> =
        states.iter().map(|s| s.state.last_triggered_at).collect();
    let counts: Vec<i32> = states
        .iter()
        .map(|s| s.state.trigger_count as i32)
        .collect();
    let finished: Vec<bool> = states.iter().map(|s| s.finished).collect();
    let stored = sqlx::query_scalar!(
        r#"UPDATE alerts a SET armed_up = s.armed_up, armed_down = s.armed_down,
            move_ref_at = s.move_ref_at, last_fired_bar = s.last_fired_bar,
            last_triggered_at = s.last_triggered_at, trigger_count = s.trigger_count,
            state_version = a.state_version + 1,
            status = CASE WHEN s.finished THEN 'TRIGGERED' ELSE a.status END,
            status_reason = CASE WHEN s.finished THEN 'fired once' ELSE a.status_reason END,
            updated_at = CASE WHEN s.finished OR s.last_triggered_at IS DISTINCT FROM a.last_triggered_at
                              THEN now() ELSE a.updated_at END
         FROM unnest($1::uuid[], $2::bigint[], $3::bool[], $4::bool[], $5::timestamptz[],
                     $6::timestamptz[], $7::timestamptz[], $8::int[], $9::bool[])
              AS s(alert_id, expected_version, armed_up, armed_down, move_ref_at, last_fired_bar,
                   last_triggered_at, trigger_count, finished)
         WHERE a.alert_id = s.alert_id AND a.state_version = s.expected_version
           AND a.status = 'ACTIVE'
         RETURNING a.alert_id"#,
        &ids,
        &versions,
        &up,
        &down,
        &move_ref as &[Option<DateTime<Utc>>],
        &fired_bar as &[Option<DateTime<Utc>>],
        &triggered_at as &[Option<DateTime<Utc>>],
        &counts,
        &finished,
    )
    .fetch_all(tx)
    .await?;
    let stored: std::collections::HashSet<Uuid> = stored.into_iter().collect();
    Ok(ids.into_iter().filter(|id| !stored.contains(id)).collect())
}

/// Active alerts on a symbol with their current state (the authoritative read of an
/// evaluation).
pub async fn active_on(conn: &mut PgConnection, symbol: &str) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at
           FROM alerts WHERE symbol = $1 AND status = 'ACTIVE'",
        symbol,
    )
    .fetch_all(conn)
    .await
}

/// What the in-memory alert index keeps of an alert.
pub struct IndexRow {
    pub alert_id: Uuid,
    pub symbol: String,
    pub status: String,
    pub rule_version: i32,
    pub condition: Vec<u8>,
    pub frequency: i16,
    pub bar_timeframe: i16,
    pub cooldown_secs: i64,
    pub message_template: String,
}

/// The index rows of every ACTIVE alert.
pub async fn index_rows(pool: &PgPool) -> Result<Vec<IndexRow>, sqlx::Error> {
    sqlx::query_as!(
        IndexRow,
        "SELECT alert_id, symbol, status, rule_version, condition, frequency, bar_timeframe,
                cooldown_secs, message_template
           FROM alerts WHERE status = 'ACTIVE'"
    )
    .fetch_all(pool)
    .await
}

/// The index row of one alert, whatever its status.
pub async fn index_row(pool: &PgPool, alert_id: Uuid) -> Result<Option<IndexRow>, sqlx::Error> {
    sqlx::query_as!(
        IndexRow,
        "SELECT alert_id, symbol, status, rule_version, condition, frequency, bar_timeframe,
                cooldown_secs, message_template
           FROM alerts WHERE alert_id = $1",
        alert_id,
    )
    .fetch_optional(pool)
    .await
}

/// The fields an update writes (`rearm` re-arms a changed condition).
pub struct Changes<'a> {
    pub alert_id: Uuid,
    pub name: &'a str,
    pub condition: &'a [u8],
    pub frequency: i16,
    pub bar_timeframe: i16,
    pub cooldown_secs: i64,
    pub expires_at: Option<DateTime<Utc>>,
    pub message_template: &'a str,
    pub channels: &'a [i16],
    pub webhook_endpoint_ids: &'a [Uuid],
    pub enabled: bool,
    pub rule_changed: bool,
    pub rearm: Option<Arm>,
}

/// Writes an update of an alert's fields, bumping the rule version when the rule changed.
pub async fn update(tx: &mut PgConnection, c: &Changes<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE alerts SET name = $2, condition = $3, frequency = $4, bar_timeframe = $5,
                cooldown_secs = $6, expires_at = $7, message_template = $8, channels = $9,
                webhook_endpoint_ids = $10, enabled = $11,
                rule_version = rule_version + CASE WHEN $12 THEN 1 ELSE 0 END,
                armed_up = coalesce($13, armed_up), armed_down = coalesce($14, armed_down),
                move_ref_at = CASE WHEN $13 IS NULL THEN move_ref_at END,
                state_version = state_version + 1, updated_at = now()
             WHERE alert_id = $1",
        c.alert_id,
        c.name,
        c.condition,
        c.frequency,
        c.bar_timeframe,
        c.cooldown_secs,
        c.expires_at,
        c.message_template,
        c.channels,
        c.webhook_endpoint_ids,
        c.enabled,
        c.rule_changed,
        c.rearm.map(|a| a.up),
        c.rearm.map(|a| a.down),
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// A TRIGGERED alert switched on again starts counting afresh.
pub async fn reset_trigger_count(tx: &mut PgConnection, alert_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE alerts SET trigger_count = 0 WHERE alert_id = $1 AND status = 'TRIGGERED'",
        alert_id
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn delete(tx: &mut PgConnection, alert_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM alerts WHERE alert_id = $1", alert_id)
        .execute(tx)
        .await?;
    Ok(())
}

/// One page of a user's alerts, newest first, before `before`; `statuses` empty means any.
pub async fn list(
    pool: &PgPool,
    user_id: Uuid,
    statuses: &[String],
    symbol: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as!(
        Row,
        "SELECT alert_id, user_id, symbol, name, condition, frequency, bar_timeframe,
                cooldown_secs, expires_at, message_template, channels, webhook_endpoint_ids,
                enabled, status, status_reason, armed_up, armed_down, move_ref_at,
                last_fired_bar, trigger_count, last_triggered_at, state_version, rule_version,
                saga_attempt, created_at, updated_at, activated_at
           FROM alerts WHERE user_id = $1
               AND (cardinality($2::text[]) = 0 OR status = ANY($2))
               AND ($3::text IS NULL OR symbol = $3)
               AND ($4::uuid IS NULL OR alert_id < $4)
             ORDER BY alert_id DESC LIMIT $5",
        user_id,
        statuses,
        symbol,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}

/// The live (PENDING or ACTIVE) alerts on `symbol`, locked.
pub async fn lock_live_on(tx: &mut PgConnection, symbol: &str) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT alert_id FROM alerts WHERE symbol = $1 AND status IN ('PENDING', 'ACTIVE')
         ORDER BY alert_id FOR UPDATE",
        symbol,
    )
    .fetch_all(tx)
    .await
}

/// Switches an alert off (the caller sets its status).
pub async fn switch_off(tx: &mut PgConnection, alert_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE alerts SET enabled = false WHERE alert_id = $1",
        alert_id
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// PENDING alerts whose activation answer is overdue (at most 200, oldest first).
pub async fn activations_due(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT alert_id FROM alerts WHERE status = 'PENDING' AND saga_next_at <= now()
         ORDER BY saga_next_at LIMIT 200",
    )
    .fetch_all(pool)
    .await
}

/// Records the activation request `attempt` and when to look again.
pub async fn schedule_activation(
    tx: &mut PgConnection,
    alert_id: Uuid,
    attempt: i32,
    wait: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE alerts SET saga_attempt = $2,
                    saga_next_at = now() + make_interval(secs => $3) WHERE alert_id = $1",
        alert_id,
        attempt,
        wait.as_secs_f64(),
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Alerts past their expiry not yet ended (at most 200, earliest first).
pub async fn expired(pool: &PgPool) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT alert_id FROM alerts WHERE expires_at <= now()
           AND status IN ('PENDING', 'ACTIVE', 'DISABLED') ORDER BY expires_at LIMIT 200",
    )
    .fetch_all(pool)
    .await
}

/// A user's live alerts with their symbols.
pub async fn live_of_user(
    tx: &mut PgConnection,
    user_id: Uuid,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT alert_id, symbol FROM alerts WHERE user_id = $1 AND status IN ('PENDING', 'ACTIVE')",
        user_id,
    )
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.alert_id, r.symbol)).collect())
}
