//! Fan-out: one notification becomes a stored (in-app) notification and one delivery per
//! channel and target, planned by the user's preferences — all in the caller's transaction,
//! so a trigger and its deliveries exist together or not at all.

use chrono::{DateTime, NaiveTime, Utc};
use mirai_proto::notification::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::preferences::{Plan, Resolved};
use crate::store::{deliveries, endpoints, notifications, preferences, users};

/// A notification to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub user_id: Uuid,
    pub category: pb::Category,
    pub critical: bool,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub alert_id: Option<Uuid>,
    pub symbol: String,
    /// Makes the notification unique (e.g. `trigger:<alert>:<cause event>`); `None` for none.
    pub dedupe_key: Option<String>,
    /// Channels besides in-app (which always stores it).
    pub channels: Vec<pb::Channel>,
    /// Webhook endpoints to use; empty for every enabled endpoint of the user.
    pub webhook_endpoint_ids: Vec<Uuid>,
}

/// Settings of the fan-out.
#[derive(Debug, Clone, Copy)]
pub struct FanOut {
    pub digest_default_deliver_at: NaiveTime,
}

/// What was created.
#[derive(Debug, Clone)]
pub struct Created {
    pub notification: notifications::Row,
    pub deliveries: usize,
}

impl FanOut {
    /// Stores the notification and its deliveries; `None` when the dedupe key was seen.
    pub async fn send(
        &self,
        tx: &mut PgConnection,
        n: &Outgoing,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Created>> {
        let (prefs, _) = preferences::get(tx, n.user_id).await?;
        let profile = users::get(tx, n.user_id).await?.unwrap_or_default();
        let resolved = Resolved::new(&prefs, &profile.time_zone, self.digest_default_deliver_at);
        let category = n.category;
        let in_app = resolved.plan(pb::Channel::InApp, category, n.critical, now) == Plan::Now;
        let Some(notification) = notifications::insert(
            tx,
            &notifications::New {
                user_id: n.user_id,
                category: category as i16,
                critical: n.critical,
                title: n.title.clone(),
                body: n.body.clone(),
                data: n.data.clone(),
                alert_id: n.alert_id,
                symbol: n.symbol.clone(),
                in_app,
                dedupe_key: n.dedupe_key.clone(),
            },
        )
        .await?
        else {
            return Ok(None);
        };
        let id = notification.notification_id;
        let mut planned: Vec<deliveries::New> = vec![deliveries::New {
            user_id: n.user_id,
            notification_id: id,
            channel: pb::Channel::InApp,
            target: String::new(),
            status: if in_app { "DELIVERED" } else { "SUPPRESSED" },
            next_attempt_at: None,
            digest: false,
            last_error: String::new(),
            resend_of: None,
        }];
        let mut channels = n.channels.clone();
        channels.sort_by_key(|c| *c as i32);
        channels.dedup();
        for channel in channels {
            let targets: Vec<Result<String, String>> = match channel {
                pb::Channel::InApp | pb::Channel::Unspecified => continue,
                pb::Channel::Email => {
                    let address = if prefs.email.is_empty() {
                        profile.email.clone()
                    } else {
                        prefs.email.clone()
                    };
                    vec![if address.is_empty() {
                        Err("no email address is known for the user".to_owned())
                    } else {
                        Ok(address)
                    }]
                }
                pb::Channel::Webhook => endpoints::list(tx, n.user_id)
                    .await?
                    .into_iter()
                    .filter(|e| {
                        n.webhook_endpoint_ids.is_empty()
                            || n.webhook_endpoint_ids.contains(&e.webhook_endpoint_id)
                    })
                    .filter(|e| e.enabled() && e.takes(category as i16))
                    .map(|e| Ok(e.webhook_endpoint_id.to_string()))
                    .collect(),
                pb::Channel::Push => endpoints::devices(tx, n.user_id)
                    .await?
                    .into_iter()
                    .map(|d| Ok(d.push_device_id.to_string()))
                    .collect(),
            };
            let plan = resolved.plan(channel, category, n.critical, now);
            for target in targets {
                let base = deliveries::New {
                    user_id: n.user_id,
                    notification_id: id,
                    channel,
                    target: String::new(),
                    status: "QUEUED",
                    next_attempt_at: Some(now),
                    digest: false,
                    last_error: String::new(),
                    resend_of: None,
                };
                planned.push(match (target, plan) {
                    // Nowhere to send it: recorded as FAILED, so it does not vanish.
                    (Err(why), _) => deliveries::New {
                        status: "FAILED",
                        next_attempt_at: None,
                        last_error: why,
                        ..base
                    },
                    (Ok(target), Plan::Now) => deliveries::New { target, ..base },
                    (Ok(target), Plan::Suppressed) => deliveries::New {
                        target,
                        status: "SUPPRESSED",
                        next_attempt_at: None,
                        ..base
                    },
                    (Ok(target), Plan::Deferred { until, digest }) => deliveries::New {
                        target,
                        status: "DEFERRED",
                        next_attempt_at: Some(until),
                        digest,
                        ..base
                    },
                });
            }
        }
        let mut created = 0;
        for d in &planned {
            if deliveries::insert(tx, d).await?.is_some() {
                created += 1;
            }
        }
        Ok(Some(Created {
            notification,
            deliveries: created,
        }))
    }
}
