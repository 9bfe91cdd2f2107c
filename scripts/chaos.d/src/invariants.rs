//! The promises, checked from the databases (never from logs) after each scenario's recovery.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};

use crate::stack::{Kind, Layout, SERVICES};
use crate::webhooks::Receiver;
use crate::workload::Created;

/// Connections of the harness carry this name, so `pg_terminate_backend` of a service's
/// connections spares them.
pub const APPLICATION_NAME: &str = "mirai-chaos";

/// Work younger than this is in flight, not stuck: the workload goes on while the invariants
/// settle, so every check would otherwise catch some event between its outbox and its consumer,
/// some alert between its request and the answer (and on a loaded machine every check did,
/// until the settle limit ran out). An unpublished outbox row, an unapplied published event, a
/// PENDING alert, an open deletion or an unfinished report counts once it is this old, and a
/// settle is not accepted before this long, so what the fault itself left behind is old enough
/// to be seen. The slowest legitimate path is a lost activation asked again after the harness's
/// 10 s activation timeout.
const IN_FLIGHT_SECS: f64 = 15.0;

/// The replayed timeframe, as both databases store it.
const DAILY: i32 = mirai_proto::stock::v1::Timeframe::OneDay as i32;

pub struct Databases {
    pools: BTreeMap<Kind, PgPool>,
}

/// An event flow: rows of `event_type` in the producer's outbox must each be in the consumer's
/// inbox (`processed_events`) under `handler`.
struct Flow {
    producer: Kind,
    event_type: &'static str,
    consumer: Kind,
    handler: &'static str,
}

const FLOWS: &[Flow] = &[
    Flow {
        producer: Kind::StockData,
        event_type: "mirai.stock.bar.closed.v1",
        consumer: Kind::Analytics,
        handler: "bars.closed",
    },
    Flow {
        producer: Kind::StockData,
        event_type: "mirai.stock.bar.closed.v1",
        consumer: Kind::Prediction,
        handler: "prediction.bar-closed",
    },
    Flow {
        producer: Kind::StockData,
        event_type: "mirai.stock.bar.closed.v1",
        consumer: Kind::Notification,
        handler: "evaluate.bar-closed",
    },
    Flow {
        producer: Kind::StockData,
        event_type: "mirai.stock.price.updated.v1",
        consumer: Kind::Notification,
        handler: "evaluate.price-updated",
    },
    Flow {
        producer: Kind::Notification,
        event_type: "mirai.alert.requested.v1",
        consumer: Kind::StockData,
        handler: "tracking.alert-requested",
    },
    Flow {
        producer: Kind::StockData,
        event_type: "mirai.symbol.tracking.confirmed.v1",
        consumer: Kind::Notification,
        handler: "saga.tracking-confirmed",
    },
    Flow {
        producer: Kind::Prediction,
        event_type: "mirai.prediction.generated.v1",
        consumer: Kind::Notification,
        handler: "evaluate.prediction-generated",
    },
    Flow {
        producer: Kind::User,
        event_type: "mirai.user.registered.v1",
        consumer: Kind::Notification,
        handler: "users.registered",
    },
    Flow {
        producer: Kind::User,
        event_type: "mirai.user.deletion.requested.v1",
        consumer: Kind::Notification,
        handler: "deletion-saga.participant",
    },
    Flow {
        producer: Kind::User,
        event_type: "mirai.user.deletion.requested.v1",
        consumer: Kind::StockData,
        handler: "deletion-saga.participant",
    },
    Flow {
        producer: Kind::User,
        event_type: "mirai.user.deletion.requested.v1",
        consumer: Kind::Prediction,
        handler: "deletion-saga.participant",
    },
    Flow {
        producer: Kind::User,
        event_type: "mirai.user.deletion.requested.v1",
        consumer: Kind::Analytics,
        handler: "deletion-saga.participant",
    },
    Flow {
        producer: Kind::Notification,
        event_type: "mirai.user.data.purged.v1",
        consumer: Kind::User,
        handler: "deletion-saga.purged",
    },
    Flow {
        producer: Kind::StockData,
        event_type: "mirai.user.data.purged.v1",
        consumer: Kind::User,
        handler: "deletion-saga.purged",
    },
    Flow {
        producer: Kind::Prediction,
        event_type: "mirai.user.data.purged.v1",
        consumer: Kind::User,
        handler: "deletion-saga.purged",
    },
    Flow {
        producer: Kind::Analytics,
        event_type: "mirai.user.data.purged.v1",
        consumer: Kind::User,
        handler: "deletion-saga.purged",
    },
    Flow {
        producer: Kind::Analytics,
        event_type: "mirai.report.completed.v1",
        consumer: Kind::Notification,
        handler: "system.report-completed",
    },
];

/// What one check found; every number's target is 0.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub outbox_pending: i64,
    pub events_lost: i64,
    /// Events not applied because the Pub/Sub emulator keeps them from every subscriber, and
    /// the sagas waiting for them (see [`held_by_the_emulator`]); not counted as lost or stuck.
    pub events_held: i64,
    pub sagas_held: i64,
    pub duplicated_effects: i64,
    pub sagas_stuck: i64,
    pub lost_writes: i64,
    /// Events checked (flows × rows) and webhook deliveries seen, for scale.
    pub events_checked: i64,
    pub details: Vec<String>,
}

impl Findings {
    pub fn clean(&self) -> bool {
        self.outbox_pending == 0
            && self.events_lost == 0
            && self.duplicated_effects == 0
            && self.sagas_stuck == 0
            && self.lost_writes == 0
    }
}

impl Databases {
    pub async fn connect(layout: &Layout) -> Result<Databases> {
        let mut pools = BTreeMap::new();
        for kind in SERVICES {
            let options: PgConnectOptions = layout
                .database_url(kind)
                .parse::<PgConnectOptions>()?
                .application_name(APPLICATION_NAME)
                .disable_statement_logging();
            let pool = PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .with_context(|| format!("connecting to {}", layout.database(kind)))?;
            pools.insert(kind, pool);
        }
        Ok(Databases { pools })
    }

    pub fn pool(&self, kind: Kind) -> &PgPool {
        &self.pools[&kind]
    }

    /// `pg_terminate_backend` of every connection of one service's database but the harness's.
    pub async fn terminate_connections(&self, layout: &Layout, kind: Kind) -> Result<i64> {
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2",
        )
        .bind(layout.database(kind))
        .bind(APPLICATION_NAME)
        .fetch_one(self.pool(Kind::User))
        .await?;
        Ok(terminated)
    }

    /// Polls until every invariant holds or `limit` passes; returns the last findings. The
    /// workload goes on meanwhile, so what it created and deleted is read afresh every time.
    pub async fn settle(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        created: &tokio::sync::Mutex<Created>,
        hooks: &Receiver,
        replayed: &[(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)],
        stops: &[Stop],
        limit: Duration,
    ) -> Result<(Findings, Duration)> {
        let started = Instant::now();
        loop {
            let snapshot = created.lock().await.clone();
            let findings = self.check(since, &snapshot, hooks, replayed, stops).await?;
            // Held events stay held: waiting for them would only run out the limit.
            let settled = findings.events_held == 0 || started.elapsed() > EMULATOR_GRACE;
            let aged = started.elapsed().as_secs_f64() >= IN_FLIGHT_SECS;
            if findings.clean() && settled && aged || started.elapsed() > limit {
                return Ok((findings, started.elapsed()));
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    pub async fn check(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        created: &Created,
        hooks: &Receiver,
        replayed: &[(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)],
        stops: &[Stop],
    ) -> Result<Findings> {
        let mut f = Findings::default();
        // Correlation ids (alert, user) of the events the emulator holds.
        let mut held_sagas = BTreeSet::new();
        let mut held_handlers = BTreeSet::new();

        // Every committed outbox row published.
        for kind in SERVICES {
            let pending: i64 =
                sqlx::query_scalar(
                    "SELECT count(*) FROM outbox
                      WHERE published_at IS NULL AND created_at < now() - make_interval(secs => $1)",
                )
                .bind(IN_FLIGHT_SECS)
                .fetch_one(self.pool(kind))
                .await?;
            if pending > 0 {
                f.details.push(format!(
                    "{}: {pending} outbox rows unpublished",
                    kind.name()
                ));
            }
            f.outbox_pending += pending;
        }

        // Every published event applied by every consumer (its inbox row is written in the
        // handler's transaction).
        for flow in FLOWS {
            let produced: Vec<Produced> = sqlx::query_as(
                "SELECT event_id, ordering_key, published_at, coalesce(attributes->>'mirai-correlation-id', '')
                   FROM outbox WHERE event_type = $1 AND created_at >= $2
                    AND published_at < now() - make_interval(secs => $3)
                  ORDER BY id",
            )
            .bind(flow.event_type)
            .bind(since)
            .bind(IN_FLIGHT_SECS)
            .fetch_all(self.pool(flow.producer))
            .await?;
            if produced.is_empty() {
                continue;
            }
            let ids: Vec<uuid::Uuid> = produced.iter().map(|p| p.0).collect();
            let applied: BTreeSet<uuid::Uuid> = sqlx::query_scalar(
                "SELECT event_id FROM processed_events WHERE handler = $1 AND event_id = ANY($2)",
            )
            .bind(flow.handler)
            .bind(&ids)
            .fetch_all(self.pool(flow.consumer))
            .await?
            .into_iter()
            .collect();
            f.events_checked += produced.len() as i64;
            let missing = produced.len() - applied.len();
            if missing == 0 {
                continue;
            }
            let stops: Vec<_> = stops
                .iter()
                .filter(|k| k.kind == flow.consumer)
                .map(|k| k.at)
                .collect();
            let held = held_by_the_emulator(&produced, &applied, &stops);
            f.details.push(format!(
                "{} → {} `{}`: {missing} of {} {}",
                flow.event_type,
                flow.consumer.name(),
                flow.handler,
                produced.len(),
                if held.is_some() {
                    "held by the Pub/Sub emulator (ordering key stalled after a SIGKILL of the consumer)"
                } else {
                    "not applied"
                }
            ));
            match held {
                Some(held) => {
                    f.events_held += missing as i64;
                    held_sagas.extend(held);
                    held_handlers.insert(flow.handler);
                }
                None => f.events_lost += missing as i64,
            }
        }

        // Effects exactly once. Alert triggers: the trigger counter and the notifications are
        // written in one transaction per cause; one delivery per notification, channel, target.
        let notes = self.pool(Kind::Notification);
        let mismatched: Vec<(uuid::Uuid, i32, i64)> = sqlx::query_as(
            "SELECT a.alert_id, a.trigger_count, count(n.notification_id)
             FROM alerts a LEFT JOIN notifications n
                  ON n.alert_id = a.alert_id AND n.dedupe_key LIKE 'trigger:%'
             GROUP BY a.alert_id, a.trigger_count HAVING a.trigger_count <> count(n.notification_id)",
        )
        .fetch_all(notes)
        .await?;
        for (alert, triggers, notifications) in &mismatched {
            f.details.push(format!(
                "alert {alert}: {triggers} triggers, {notifications} notifications"
            ));
            f.duplicated_effects += (notifications - *triggers as i64).abs();
        }
        // Each trigger is one event on the public `price-alerts` topic and one internal
        // `alert.triggered`, written in the trigger's transaction (the outbox relay publishes
        // them; subscribers deduplicate redeliveries on the CloudEvent id).
        let public_mismatch: Vec<(uuid::Uuid, i32, i64, i64)> = sqlx::query_as(
            "SELECT a.alert_id, a.trigger_count,
                    (SELECT count(*) FROM outbox o WHERE o.topic = 'price-alerts'
                       AND convert_from(o.payload, 'UTF8')::jsonb->'data'->>'alert_id' = a.alert_id::text),
                    (SELECT count(*) FROM outbox o WHERE o.event_type = 'mirai.alert.triggered.v1'
                       AND o.attributes->>'mirai-correlation-id' = a.alert_id::text)
               FROM alerts a WHERE a.created_at >= $1",
        )
        .bind(since)
        .fetch_all(notes)
        .await?;
        for (alert, triggers, public, internal) in &public_mismatch {
            let triggers = i64::from(*triggers);
            if *public != triggers || *internal != triggers {
                f.details.push(format!(
                    "alert {alert}: {triggers} triggers, {public} price-alerts events, {internal} alert.triggered events"
                ));
                f.duplicated_effects += (public - triggers).max(0) + (internal - triggers).max(0);
                f.events_lost += (triggers - public).max(0) + (triggers - internal).max(0);
            }
        }
        let double_deliveries: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(c - 1), 0)::bigint FROM (
                 SELECT count(*) AS c FROM deliveries WHERE resend_of IS NULL
                 GROUP BY notification_id, channel, target HAVING count(*) > 1) d",
        )
        .fetch_one(notes)
        .await?;
        if double_deliveries > 0 {
            f.details
                .push(format!("{double_deliveries} duplicated deliveries"));
        }
        f.duplicated_effects += double_deliveries;
        // Webhooks: every delivery the database calls delivered arrived (under its own id), and
        // nothing arrived that the database does not know.
        let delivered: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT d.delivery_id FROM deliveries d
             JOIN webhook_endpoints w ON w.webhook_endpoint_id::text = d.target
             WHERE d.status = 'DELIVERED'",
        )
        .fetch_all(notes)
        .await?;
        let delivered: BTreeSet<String> = delivered.iter().map(|d| d.to_string()).collect();
        let received = hooks.ids();
        let never_arrived = delivered.difference(&received).count() as i64;
        let unknown = received.difference(&delivered).count() as i64;
        if never_arrived > 0 {
            f.details.push(format!(
                "{never_arrived} webhook deliveries marked delivered never arrived"
            ));
            f.events_lost += never_arrived;
        }
        let _ = unknown; // a delivery in flight is received before it is marked DELIVERED
        // Forecasts made from bar events: one per model version, symbol and bar.
        let double_forecasts: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(c - 1), 0)::bigint FROM (
                 SELECT count(*) AS c FROM predictions WHERE origin = 'event' AND created_at >= $1
                 GROUP BY model_name, model_version, symbol, timeframe, as_of HAVING count(*) > 1) p",
        )
        .bind(since)
        .fetch_one(self.pool(Kind::Prediction))
        .await?;
        if double_forecasts > 0 {
            f.details.push(format!(
                "{double_forecasts} event forecasts made twice for one bar"
            ));
        }
        f.duplicated_effects += double_forecasts;
        // Analytics' read model equals stock-data's bars over every replayed range.
        for (from, to) in replayed {
            let q = "SELECT start_at, open, high, low, close, volume FROM bars
                     WHERE symbol = 'SPX' AND timeframe = $3 AND start_at >= $1 AND start_at < $2 ORDER BY start_at";
            let stock = sqlx::query(q)
                .bind(from)
                .bind(to)
                .bind(DAILY as i16)
                .fetch_all(self.pool(Kind::StockData))
                .await?;
            let analytics = sqlx::query(q)
                .bind(from)
                .bind(to)
                .bind(DAILY)
                .fetch_all(self.pool(Kind::Analytics))
                .await?;
            let key = |r: &sqlx::postgres::PgRow| -> Result<String> {
                Ok(format!(
                    "{} {} {} {} {} {}",
                    r.try_get::<chrono::DateTime<chrono::Utc>, _>(0)?,
                    r.try_get::<f64, _>(1)?,
                    r.try_get::<f64, _>(2)?,
                    r.try_get::<f64, _>(3)?,
                    r.try_get::<f64, _>(4)?,
                    r.try_get::<f64, _>(5)?
                ))
            };
            let a: BTreeSet<String> = stock.iter().map(key).collect::<Result<_>>()?;
            let b: BTreeSet<String> = analytics.iter().map(key).collect::<Result<_>>()?;
            let missing = a.difference(&b).count() as i64;
            if missing > 0 && held_handlers.contains("bars.closed") {
                f.details.push(format!(
                    "analytics misses {missing} of {} replayed bars, their events held by the emulator",
                    a.len()
                ));
            } else if missing > 0 {
                f.details.push(format!(
                    "analytics misses or differs on {missing} of {} replayed bars",
                    a.len()
                ));
                f.events_lost += missing;
            }
        }

        // Sagas: alerts leave PENDING, deletions complete, reports finish.
        // A saga waiting for an event the emulator holds is counted apart.
        let pending: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT alert_id FROM alerts WHERE status = 'PENDING' AND enabled
                AND updated_at < now() - make_interval(secs => $1)",
        )
        .bind(IN_FLIGHT_SECS)
        .fetch_all(notes)
        .await?;
        let (held, pending): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|id| held_sagas.contains(&id.to_string()));
        f.sagas_held += held.len() as i64;
        let pending_alerts = pending.len() as i64;
        if pending_alerts > 0 {
            f.details
                .push(format!("{pending_alerts} alerts still PENDING"));
        }
        if !held.is_empty() {
            f.details.push(format!(
                "{} alerts PENDING on an event the emulator holds",
                held.len()
            ));
        }
        let open: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT correlation_id FROM deletion_sagas
              WHERE completed_at IS NULL AND requested_at < now() - make_interval(secs => $1)",
        )
        .bind(IN_FLIGHT_SECS)
        .fetch_all(self.pool(Kind::User))
        .await?;
        let (held, open): (Vec<_>, Vec<_>) = open
            .into_iter()
            .partition(|id| held_sagas.contains(&id.to_string()));
        f.sagas_held += held.len() as i64;
        let open_deletions = open.len() as i64;
        if open_deletions > 0 {
            f.details
                .push(format!("{open_deletions} account deletions not completed"));
        }
        if !held.is_empty() {
            f.details.push(format!(
                "{} account deletions waiting on an event the emulator holds",
                held.len()
            ));
        }
        let unfinished_reports: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM report_jobs WHERE status IN ('queued', 'running')
                AND created_at < now() - make_interval(secs => $1)",
        )
        .bind(IN_FLIGHT_SECS)
        .fetch_one(self.pool(Kind::Analytics))
        .await?;
        if unfinished_reports > 0 {
            f.details
                .push(format!("{unfinished_reports} reports queued or running"));
        }
        f.sagas_stuck = pending_alerts + open_deletions + unfinished_reports;

        // Nothing acknowledged was lost or half-written.
        let users: Vec<uuid::Uuid> = ids(&created.users)?;
        let stored_users: i64 =
            sqlx::query_scalar("SELECT count(*) FROM users WHERE user_id = ANY($1)")
                .bind(&users)
                .fetch_one(self.pool(Kind::User))
                .await?;
        // A delete that got no answer may or may not have happened: neither side is checked.
        let live_alerts: BTreeSet<String> = created
            .alerts
            .difference(&created.alerts_deleted)
            .filter(|a| !created.alerts_maybe_deleted.contains(*a))
            .cloned()
            .collect();
        let alerts = ids(&live_alerts)?;
        let found: BTreeSet<uuid::Uuid> =
            sqlx::query_scalar("SELECT alert_id FROM alerts WHERE alert_id = ANY($1)")
                .bind(&alerts)
                .fetch_all(notes)
                .await?
                .into_iter()
                .collect();
        let stored_alerts = found.len() as i64;
        let missing: Vec<String> = alerts
            .iter()
            .filter(|a| !found.contains(a))
            .map(|a| {
                let id = a.to_string();
                match created.alert_deletes.get(&id) {
                    Some(answers) => format!("{id} (deletes answered {answers:?})"),
                    None => format!("{id} (never deleted by the workload)"),
                }
            })
            .collect();
        if !missing.is_empty() {
            f.details
                .push(format!("alerts not found: {}", missing.join(", ")));
        }
        let deleted_alerts = ids(&created.alerts_deleted)?;
        let resurrected: i64 =
            sqlx::query_scalar("SELECT count(*) FROM alerts WHERE alert_id = ANY($1)")
                .bind(&deleted_alerts)
                .fetch_one(notes)
                .await?;
        let reports = ids(&created.reports)?;
        let stored_reports: i64 =
            sqlx::query_scalar("SELECT count(*) FROM report_jobs WHERE report_id = ANY($1)")
                .bind(&reports)
                .fetch_one(self.pool(Kind::Analytics))
                .await?;
        let half_reports: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM report_jobs j WHERE status = 'succeeded' AND report_id = ANY($1)
               AND cardinality(formats) <> (SELECT count(*) FROM report_files f WHERE f.report_id = j.report_id)",
        )
        .bind(&reports)
        .fetch_one(self.pool(Kind::Analytics))
        .await?;
        let deletions = ids(&created.deleted_accounts)?;
        let stored_deletions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deletion_sagas WHERE user_id = ANY($1)")
                .bind(&deletions)
                .fetch_one(self.pool(Kind::User))
                .await?;
        let gaps = [
            ("accounts", users.len() as i64 - stored_users),
            ("alerts", alerts.len() as i64 - stored_alerts),
            ("deleted alerts back", resurrected),
            ("reports", reports.len() as i64 - stored_reports),
            ("reports without all files", half_reports),
            ("deletion sagas", deletions.len() as i64 - stored_deletions),
        ];
        for (what, gap) in gaps {
            if gap != 0 {
                f.details
                    .push(format!("{what}: {gap} acknowledged but not stored"));
                f.lost_writes += gap.abs();
            }
        }
        Ok(f)
    }
}

/// A replica the harness stopped (SIGKILL, or SIGTERM in a rolling restart): which kind, when.
#[derive(Clone, Copy, Debug)]
pub struct Stop {
    pub kind: Kind,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// How long after its recovery a scenario whose only findings are held events is still
/// watched (a held key never moves on the emulator: no point waiting out the whole limit).
const EMULATOR_GRACE: Duration = Duration::from_secs(20);

/// An outbox row of a flow: event id, ordering key, publish time, correlation id.
type Produced = (
    uuid::Uuid,
    String,
    Option<chrono::DateTime<chrono::Utc>>,
    String,
);

/// The Pub/Sub emulator (0.8.x) never redelivers an ordered message leased to a streaming pull
/// that went away — a SIGKILLed subscriber, and (seen with Google's Python client) even one
/// that nacked and closed cleanly: the gone stream stays registered, its ordering key stays
/// pinned to it, and every later message of that key waits behind it on every subscriber, for
/// good. Pub/Sub redelivers such a message once its ack deadline (10 s here) passes, or at once
/// after a nack. `scripts/chaos.d/emulator_ordering.py` shows it with no Mirai code.
///
/// Later keys can stall too: the emulator hashes each key onto the registered streams, the
/// gone one included, so a key first published after the stop may land on it.
///
/// The unapplied events of a flow are put down to that — and not to the platform — only when
/// they have exactly its shape: a replica of the consumer was stopped, and for each ordering
/// key the unapplied events are the whole tail of the key's sequence, starting with one
/// published after (or at most 30 s before, when it could have been leased to the stopping
/// replica) a stop. Anything else — a gap in the middle of a key, a stall that began well
/// before any stop, an unordered event — is counted as lost. Returns the correlation ids of the held events (sagas
/// waiting for them), or `None`.
fn held_by_the_emulator(
    produced: &[Produced],
    applied: &BTreeSet<uuid::Uuid>,
    stops: &[chrono::DateTime<chrono::Utc>],
) -> Option<BTreeSet<String>> {
    if stops.is_empty() {
        return None;
    }
    let mut by_key: BTreeMap<&str, Vec<&Produced>> = BTreeMap::new();
    for row in produced {
        by_key.entry(row.1.as_str()).or_default().push(row);
    }
    let mut held = BTreeSet::new();
    for (key, rows) in by_key {
        let Some(first) = rows.iter().position(|r| !applied.contains(&r.0)) else {
            continue;
        };
        let tail = &rows[first..];
        let after_a_stop = tail[0].2.is_some_and(|published| {
            stops
                .iter()
                .any(|stop| published >= *stop - chrono::Duration::seconds(30))
        });
        if key.is_empty() || !after_a_stop || tail.iter().any(|r| applied.contains(&r.0)) {
            return None;
        }
        held.extend(tail.iter().map(|r| r.3.clone()));
    }
    Some(held)
}

fn ids(set: &BTreeSet<String>) -> Result<Vec<uuid::Uuid>> {
    set.iter().map(|s| s.parse().context("a uuid")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: u32) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone as _;
        chrono::Utc
            .with_ymd_and_hms(2026, 12, 6, 12, 0, second)
            .unwrap()
    }

    /// Six events of key SPX published a second apart; `applied` says which ones were.
    fn flow(applied: &[bool]) -> (Vec<Produced>, BTreeSet<uuid::Uuid>) {
        let rows: Vec<Produced> = (0..applied.len())
            .map(|i| {
                (
                    uuid::Uuid::now_v7(),
                    "SPX".to_owned(),
                    Some(at(i as u32)),
                    format!("saga-{i}"),
                )
            })
            .collect();
        let done = rows
            .iter()
            .zip(applied)
            .filter(|(_, a)| **a)
            .map(|(r, _)| r.0)
            .collect();
        (rows, done)
    }

    #[test]
    fn only_a_stalled_tail_that_began_near_a_stop_is_put_down_to_the_emulator() {
        let (rows, applied) = flow(&[true, true, false, false, false, false]);
        let held = held_by_the_emulator(&rows, &applied, &[at(3)]).expect("a stalled tail");
        assert_eq!(held.len(), 4);
        assert!(held.contains("saga-2") && held.contains("saga-5"));
        // Published after the stop: the key may hash onto the gone stream.
        assert!(held_by_the_emulator(&rows, &applied, &[at(1)]).is_some());
        // No stop of the consumer, or the stall began well before any stop: lost, not held.
        assert!(held_by_the_emulator(&rows, &applied, &[]).is_none());
        assert!(held_by_the_emulator(&rows, &applied, &[at(45)]).is_none());
        // A gap with later events applied is no stalled key.
        let (rows, applied) = flow(&[true, false, true, false, false, false]);
        assert!(held_by_the_emulator(&rows, &applied, &[at(5)]).is_none());
        // Unordered events are never held: the emulator redelivers those.
        let (mut rows, applied) = flow(&[true, false, false]);
        for row in &mut rows {
            row.1.clear();
        }
        assert!(held_by_the_emulator(&rows, &applied, &[at(5)]).is_none());
    }
}
