//! The delivery worker: attempts due email, webhook and push deliveries, records every
//! attempt, and schedules retries.
//!
//! Claiming: due rows (QUEUED, RETRYING, DEFERRED with `next_attempt_at <= now`) are locked
//! with `FOR UPDATE SKIP LOCKED` and leased (their `next_attempt_at` moved past the attempt's
//! timeout) in a short transaction, so replicas share the work and a crashed worker's deliveries
//! are picked up again after the lease. The attempt runs outside any transaction; its result
//! is written with the attempt row. A failed attempt is retried after the next delay of the
//! configured schedule; after the last one the delivery is FAILED (kept, and re-sendable).
//! Digest deliveries due together for the same target go out as one message.
//!
//! A webhook endpoint remembers when its current run of failures started; once that is
//! longer ago than the configured period, the endpoint is disabled (DISABLED_FAILING) and its
//! pending deliveries fail when they come up.

pub mod email;
pub mod push;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use mirai_proto::notification::v1::AttemptOutcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::context::Shared;
use crate::domain::target;
use crate::public::rfc3339;
use crate::store::{self, deliveries, endpoints, notifications};
use crate::verify;

/// The result of one attempt.
#[derive(Debug, Clone)]
pub struct Attempted {
    pub outcome: AttemptOutcome,
    /// HTTP status or SMTP reply code; 0 without a response.
    pub code: i32,
    pub error: String,
    /// Whether another attempt may succeed.
    pub retry: bool,
}

impl Attempted {
    pub fn succeeded(code: i32) -> Self {
        Self {
            outcome: AttemptOutcome::Succeeded,
            code,
            error: String::new(),
            retry: false,
        }
    }
    pub fn failed(code: i32, error: String) -> Self {
        Self {
            outcome: AttemptOutcome::Failed,
            code,
            error,
            retry: true,
        }
    }
    pub fn final_failure(code: i32, error: String) -> Self {
        Self {
            outcome: AttemptOutcome::Failed,
            code,
            error,
            retry: false,
        }
    }
    pub fn blocked(error: String) -> Self {
        Self {
            outcome: AttemptOutcome::Blocked,
            code: 0,
            error,
            retry: false,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    channel: &'static str,
    outcome: &'static str,
}

/// `mirai_notification_delivery_attempts_total{channel, outcome}`.
#[derive(Clone, Default)]
pub struct DeliveryMetrics {
    attempts: Family<AttemptLabels, Counter>,
}

impl DeliveryMetrics {
    pub fn register(metrics: &mirai_platform::telemetry::Metrics) -> Self {
        Self {
            attempts: metrics.register(
                "notification_delivery_attempts",
                "Delivery attempts, by channel and outcome.",
                Family::default(),
            ),
        }
    }
}

fn channel_name(channel: pb::Channel) -> &'static str {
    match channel {
        pb::Channel::Email => "email",
        pb::Channel::Webhook => "webhook",
        pb::Channel::Push => "push",
        pb::Channel::InApp => "in_app",
        pb::Channel::Unspecified => "unspecified",
    }
}

fn outcome_name(outcome: AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Succeeded => "succeeded",
        AttemptOutcome::Failed => "failed",
        AttemptOutcome::TimedOut => "timed_out",
        AttemptOutcome::Blocked => "blocked",
        AttemptOutcome::Unspecified => "unspecified",
    }
}

/// The worker.
pub struct Worker {
    ctx: Shared,
    http: reqwest::Client,
    /// What webhook targets are refused.
    targets: target::Policy,
    push: Option<push::Push>,
    metrics: DeliveryMetrics,
}

/// Deliveries attempted together: one, or a digest bundle for one target.
struct Group {
    channel: pb::Channel,
    user_id: Uuid,
    target: String,
    rows: Vec<deliveries::Row>,
}

impl Worker {
    pub fn new(ctx: Shared, metrics: DeliveryMetrics) -> anyhow::Result<Self> {
        let config = &ctx.config;
        Ok(Self {
            http: webhook::client(config.webhooks.timeout, config.webhooks.target_policy())?,
            targets: config.webhooks.target_policy(),
            push: config.fcm.as_ref().map(push::Push::new).transpose()?,
            metrics,
            ctx,
        })
    }

    /// Runs until `stop`; attempts in flight finish first.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.ctx.config.deliveries.concurrency));
        // Without a listener the worker polls.
        let mut listener = mirai_platform::db::listen(&self.ctx.pool, "mirai_deliveries").await;
        let mut in_flight = tokio::task::JoinSet::new();
        while !stop.is_cancelled() {
            let free = permits.available_permits();
            let claimed = if free == 0 {
                Ok(Vec::new())
            } else {
                self.claim(free as i64).await
            };
            let claimed = match claimed {
                Ok(groups) => groups,
                Err(error) => {
                    tracing::warn!(message = "Claiming deliveries failed.", %error);
                    Vec::new()
                }
            };
            let busy = !claimed.is_empty();
            for group in claimed {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let worker = self.clone();
                in_flight.spawn(async move {
                    worker.attempt(group).await;
                    drop(permit);
                });
            }
            while in_flight.try_join_next().is_some() {}
            if busy && permits.available_permits() > 0 {
                continue;
            }
            let wake = async {
                match listener.as_mut() {
                    Some(l) => {
                        if l.recv().await.is_err() {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wake => {}
                _ = tokio::time::sleep(self.ctx.config.deliveries.poll_interval) => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
    }

    /// Claims up to `limit` due deliveries, grouped for attempting.
    async fn claim(&self, limit: i64) -> Result<Vec<Group>, sqlx::Error> {
        let lease = self
            .ctx
            .config
            .webhooks
            .timeout
            .max(Duration::from_secs(10))
            .saturating_mul(3);
        let mut tx = self.ctx.pool.begin().await?;
        let rows = deliveries::claim(&mut tx, limit, lease).await?;
        tx.commit().await?;
        let mut groups: Vec<Group> = Vec::new();
        let mut digests: HashMap<(Uuid, i16, String), usize> = HashMap::new();
        for row in rows {
            let channel = store::channel_of(row.channel);
            if row.digest {
                let key = (row.user_id, row.channel, row.target.clone());
                if let Some(i) = digests.get(&key) {
                    groups[*i].rows.push(row);
                    continue;
                }
                digests.insert(key, groups.len());
            }
            groups.push(Group {
                channel,
                user_id: row.user_id,
                target: row.target.clone(),
                rows: vec![row],
            });
        }
        Ok(groups)
    }

    async fn attempt(&self, group: Group) {
        let started_at = Utc::now();
        let started = Instant::now();
        let result = match self.perform(&group).await {
            Ok(r) => r,
            Err(error) => Attempted::failed(0, format!("internal: {error:#}")),
        };
        let duration_ms = started.elapsed().as_millis() as i64;
        self.metrics
            .attempts
            .get_or_create(&AttemptLabels {
                channel: channel_name(group.channel),
                outcome: outcome_name(result.outcome),
            })
            .inc();
        if let Err(error) = self.record(&group, &result, started_at, duration_ms).await {
            tracing::warn!(message = "Recording a delivery attempt failed; it will be retried after the lease.", %error);
        }
    }

    async fn perform(&self, group: &Group) -> anyhow::Result<Attempted> {
        let mut conn = self.ctx.pool.acquire().await?;
        let ids: Vec<Uuid> = group.rows.iter().map(|r| r.notification_id).collect();
        let items = notifications::get_many(&mut conn, &ids).await?;
        let Some(first) = items.first() else {
            return Ok(Attempted::final_failure(
                0,
                "the notification is gone".into(),
            ));
        };
        let digest = group.rows.iter().any(|r| r.digest);
        let subject = if digest {
            format!("Your MiraiKakaku digest: {} notification(s)", items.len())
        } else {
            first.title.clone()
        };
        Ok(match group.channel {
            pb::Channel::Webhook => {
                let Ok(endpoint_id) = group.target.parse::<Uuid>() else {
                    return Ok(Attempted::final_failure(0, "bad endpoint id".into()));
                };
                let Some(endpoint) = endpoints::by_id(&mut conn, endpoint_id).await? else {
                    return Ok(Attempted::final_failure(
                        0,
                        "the endpoint was deleted".into(),
                    ));
                };
                drop(conn);
                if !endpoint.enabled() {
                    return Ok(Attempted::final_failure(
                        0,
                        format!("the endpoint is {}", endpoint.status.to_lowercase()),
                    ));
                }
                let body = webhook_body(&items, digest);
                let id = group.rows[0].delivery_id.to_string();
                let secrets = match endpoint
                    .signing_secrets(Utc::now(), self.ctx.config.webhooks.secret_keys.as_ref())
                {
                    Ok(s) => s,
                    Err(error) => {
                        return Ok(Attempted::final_failure(
                            0,
                            format!("the signing secret does not open: {error:#}"),
                        ));
                    }
                };
                let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
                webhook::post(
                    &self.http,
                    &endpoint.url,
                    &self.targets,
                    &id,
                    &secrets,
                    body,
                )
                .await
            }
            pb::Channel::Email => {
                let Some(email) = &self.ctx.email else {
                    return Ok(Attempted::final_failure(
                        0,
                        "email is not configured".into(),
                    ));
                };
                // Only verified addresses get anything but a verification link.
                if !verify::ensure(&mut conn, group.user_id, &group.target).await? {
                    drop(conn);
                    let why = match verify::send_link(&self.ctx, group.user_id, &group.target)
                        .await
                    {
                        Ok(verify::Sent::Limited) => {
                            "the address is not verified (verification links are rate-limited; ask again later)".to_owned()
                        }
                        Ok(_) => "the address is not verified: a verification link was sent to it".to_owned(),
                        Err(error) => format!("the address is not verified; sending a verification link failed: {error:#}"),
                    };
                    return Ok(Attempted::blocked(why));
                }
                drop(conn);
                let list: Vec<email::Item> = items
                    .iter()
                    .map(|n| email::Item {
                        title: n.title.clone(),
                        body: n.body.clone(),
                        symbol: n.symbol.clone(),
                        created_at: rfc3339(n.created_at),
                    })
                    .collect();
                email.send(&group.target, &subject, &list).await
            }
            pb::Channel::Push => {
                let Some(push) = &self.push else {
                    return Ok(Attempted::final_failure(0, "push is not configured".into()));
                };
                let Ok(device_id) = group.target.parse::<Uuid>() else {
                    return Ok(Attempted::final_failure(0, "bad device id".into()));
                };
                let Some(device) = endpoints::device(&mut conn, device_id).await? else {
                    return Ok(Attempted::final_failure(0, "the device was removed".into()));
                };
                let (title, body, data) = if digest {
                    let body = items
                        .iter()
                        .map(|n| n.title.as_str())
                        .collect::<Vec<_>>()
                        .join("; ");
                    (subject, body, BTreeMap::new())
                } else {
                    let mut data = first.data_map();
                    data.insert("notification_id".into(), first.notification_id.to_string());
                    (first.title.clone(), first.body.clone(), data)
                };
                match push.send(&device.token, &title, &body, &data).await {
                    push::PushResult::Attempted(a) => {
                        if a.outcome == AttemptOutcome::Succeeded {
                            endpoints::device_delivered(&mut conn, device_id).await?;
                        }
                        a
                    }
                    push::PushResult::Unregistered(a) => {
                        endpoints::remove_device(&mut conn, device_id).await?;
                        tracing::info!(message = "Push device unregistered by FCM; removed.", %device_id);
                        a
                    }
                }
            }
            pb::Channel::InApp | pb::Channel::Unspecified => Attempted::succeeded(0),
        })
    }

    async fn record(
        &self,
        group: &Group,
        result: &Attempted,
        started_at: DateTime<Utc>,
        duration_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let schedule = &self.ctx.config.deliveries.retry_schedule;
        let mut tx = self.ctx.pool.begin().await?;
        for row in &group.rows {
            let attempt = row.attempts + 1;
            deliveries::record_attempt(
                &mut tx,
                row.delivery_id,
                attempt,
                result.outcome,
                started_at,
                duration_ms,
                result.code,
                &result.error,
            )
            .await?;
            let (status, next): (&str, Option<DateTime<Utc>>) =
                if result.outcome == AttemptOutcome::Succeeded {
                    let done = if group.channel == pb::Channel::Webhook {
                        "DELIVERED"
                    } else {
                        "SENT"
                    };
                    (done, None)
                } else if result.retry && (attempt as usize) < schedule.len() {
                    let delay =
                        chrono::Duration::from_std(schedule[attempt as usize]).unwrap_or_default();
                    ("RETRYING", Some(Utc::now() + delay))
                } else {
                    ("FAILED", None)
                };
            deliveries::set_result(
                &mut tx,
                row.delivery_id,
                status,
                attempt,
                next,
                // Capped like the attempt's excerpt: an error text is never stored unbounded.
                &result.error.chars().take(500).collect::<String>(),
            )
            .await?;
        }
        if group.channel == pb::Channel::Webhook
            && let Ok(endpoint_id) = group.target.parse::<Uuid>()
        {
            self.endpoint_health(&mut tx, endpoint_id, result).await?;
        }
        tx.commit().await?;
        tracing::debug!(message = "Delivery attempted.", user_id = %group.user_id, channel = channel_name(group.channel), outcome = outcome_name(result.outcome));
        Ok(())
    }

    async fn endpoint_health(
        &self,
        tx: &mut sqlx::PgConnection,
        endpoint_id: Uuid,
        result: &Attempted,
    ) -> Result<(), sqlx::Error> {
        if result.outcome == AttemptOutcome::Succeeded {
            endpoints::record_success(tx, endpoint_id).await?;
            return Ok(());
        }
        let disable_after = self.ctx.config.webhooks.disable_after;
        let reason = format!(
            "no successful delivery for {} (last: {})",
            humantime::format_duration(Duration::from_secs(disable_after.as_secs())),
            result.error.chars().take(200).collect::<String>()
        );
        let disabled =
            endpoints::record_failure(tx, endpoint_id, &result.error, disable_after, &reason)
                .await?;
        if disabled.is_some() {
            tracing::warn!(message = "Webhook endpoint disabled after sustained failure.", %endpoint_id);
        }
        Ok(())
    }
}

/// The JSON body of a webhook (Standard Webhooks' `{type, timestamp, data}` shape).
pub fn webhook_body(items: &[notifications::Row], digest: bool) -> Vec<u8> {
    let one = |n: &notifications::Row| {
        serde_json::json!({
            "notification_id": n.notification_id.to_string(),
            "category": store::category_of(n.category).as_str_name(),
            "critical": n.critical,
            "title": n.title,
            "body": n.body,
            "alert_id": n.alert_id.map(|a| a.to_string()),
            "symbol": n.symbol,
            "details": n.data,
            "created_at": rfc3339(n.created_at),
        })
    };
    let (kind, data) = if digest {
        (
            "notification.digest".to_owned(),
            serde_json::json!({ "notifications": items.iter().map(one).collect::<Vec<_>>() }),
        )
    } else {
        let n = &items[0];
        let kind = match store::category_of(n.category) {
            pb::Category::PriceAlert | pb::Category::ForecastAlert => "alert.triggered".to_owned(),
            other => format!(
                "notification.{}",
                other
                    .as_str_name()
                    .trim_start_matches("CATEGORY_")
                    .to_lowercase()
            ),
        };
        (kind, one(n))
    };
    serde_json::to_vec(&serde_json::json!({
        "type": kind,
        "timestamp": rfc3339(Utc::now()),
        "data": data,
    }))
    .unwrap_or_default()
}
