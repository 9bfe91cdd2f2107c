//! Events that are not alerts: the users read model, system notifications to admins, report
//! notifications, and this service's part in the account-deletion saga.

use std::sync::Arc;

use chrono::Utc;
use futures::future::BoxFuture;
use mirai_platform::events::Envelope;
use mirai_proto::analytics::v1::ReportStatus;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::context::Context;
use crate::notify::Outgoing;
use crate::store::users;

fn user_id(raw: &str) -> Option<Uuid> {
    raw.parse().ok()
}

pub fn on_registered<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::UserRegistered,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(id) = user_id(&e.user_id) else {
            return Ok(());
        };
        // The account's address is the user's until the preferences name another; a changed
        // one starts unverified.
        let (prefs, _) = crate::store::preferences::get(tx, id).await?;
        crate::verify::forget_others(tx, id, &[e.email.as_str(), prefs.email.as_str()]).await?;
        if !e.email.is_empty() {
            crate::verify::ensure(tx, id, &e.email).await?;
        }
        users::upsert_registered(
            tx,
            &users::Profile {
                user_id: id,
                email: e.email,
                display_name: e.display_name.clone(),
                time_zone: if e.time_zone.is_empty() {
                    "UTC".to_owned()
                } else {
                    e.time_zone
                },
                locale: e.locale,
                roles: users::role_names(&e.roles),
            },
        )
        .await?;
        let name = if e.display_name.is_empty() {
            "there".to_owned()
        } else {
            e.display_name
        };
        ctx.fanout
            .send(
                tx,
                &Outgoing {
                    user_id: id,
                    category: pb::Category::Account,
                    critical: false,
                    title: "Welcome to MiraiKakaku".to_owned(),
                    body: format!(
                        "Hi {name}! Create price and forecast alerts to be told when something happens."
                    ),
                    data: serde_json::json!({}),
                    alert_id: None,
                    symbol: String::new(),
                    dedupe_key: Some(format!("welcome:{id}")),
                    channels: Vec::new(),
                    webhook_endpoint_ids: Vec::new(),
                },
                envelope.time,
            )
            .await?;
        Ok(())
    })
}

pub fn on_role_changed<'a>(
    _: &'a Context,
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    e: ev::UserRoleChanged,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        if let Some(id) = user_id(&e.user_id) {
            users::set_roles(tx, id, &users::role_names(&e.roles)).await?;
        }
        Ok(())
    })
}

/// A system notification to every admin; `critical` ones go out by email too, at once,
/// whatever the preferences say.
#[allow(clippy::too_many_arguments)] // one call site per event kind; a struct would only rename them
async fn to_admins(
    ctx: &Context,
    tx: &mut PgConnection,
    envelope: &Envelope,
    critical: bool,
    title: String,
    body: String,
    data: serde_json::Value,
    symbol: String,
) -> anyhow::Result<()> {
    let channels = if critical {
        vec![pb::Channel::Email, pb::Channel::Push]
    } else {
        Vec::new()
    };
    for admin in users::admins(tx).await? {
        ctx.fanout
            .send(
                tx,
                &Outgoing {
                    user_id: admin,
                    category: pb::Category::System,
                    critical,
                    title: title.clone(),
                    body: body.clone(),
                    data: data.clone(),
                    alert_id: None,
                    symbol: symbol.clone(),
                    dedupe_key: Some(format!("system:{}:{admin}", envelope.id)),
                    channels: channels.clone(),
                    webhook_endpoint_ids: Vec::new(),
                },
                Utc::now(),
            )
            .await?;
    }
    Ok(())
}

pub fn on_model_degraded<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::ModelDegraded,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let breaches: Vec<String> = e
            .breaches
            .iter()
            .map(|b| {
                format!(
                    "{} {:.3} ({} {:.3})",
                    b.metric, b.value, b.bound, b.threshold
                )
            })
            .collect();
        to_admins(
            ctx,
            tx,
            envelope,
            true,
            format!("Model {} {} degraded", e.model_name, e.model_version),
            format!("{}. Breaches: {}.", e.reason, breaches.join(", ")),
            serde_json::json!({
                "model_name": e.model_name,
                "model_version": e.model_version,
                "reason": e.reason,
            }),
            String::new(),
        )
        .await
    })
}

pub fn on_model_promoted<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::ModelPromoted,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        to_admins(
            ctx,
            tx,
            envelope,
            false,
            format!("Model {} {} promoted", e.model_name, e.model_version),
            e.reason.clone(),
            serde_json::json!({
                "model_name": e.model_name,
                "model_version": e.model_version,
                "automatic": e.automatic.to_string(),
            }),
            String::new(),
        )
        .await
    })
}

pub fn on_quality_issue<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::DataQualityIssue,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let flag = mirai_proto::stock::v1::QualityFlag::try_from(e.flag)
            .map(|f| f.as_str_name().to_owned())
            .unwrap_or_else(|_| e.flag.to_string());
        to_admins(
            ctx,
            tx,
            envelope,
            true,
            format!("Data quality issue on {}", e.symbol),
            format!("{}: {} (source {}).", flag, e.detail, e.source),
            serde_json::json!({
                "symbol": e.symbol,
                "flag": flag,
                "detail": e.detail,
                "source": e.source,
            }),
            e.symbol.clone(),
        )
        .await
    })
}

pub fn on_report<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::ReportCompleted,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(id) = user_id(&e.user_id) else {
            return Ok(());
        };
        let ok = e.status == ReportStatus::Succeeded as i32;
        let (title, body) = if ok {
            (
                format!("Report ready: {}", e.title),
                format!("{} file(s) are ready to download.", e.files.len()),
            )
        } else {
            (format!("Report failed: {}", e.title), e.error.clone())
        };
        ctx.fanout
            .send(
                tx,
                &Outgoing {
                    user_id: id,
                    category: pb::Category::Report,
                    critical: false,
                    title,
                    body,
                    data: serde_json::json!({ "report_id": e.report_id }),
                    alert_id: None,
                    symbol: String::new(),
                    dedupe_key: Some(format!("report:{}", envelope.id)),
                    channels: Vec::new(),
                    webhook_endpoint_ids: Vec::new(),
                },
                Utc::now(),
            )
            .await?;
        Ok(())
    })
}

/// Removes everything this service holds about a user: alerts (releasing the tracking of
/// live ones), notifications with their deliveries and attempts, webhook endpoints, push
/// devices, preferences and the read-model row. Returns the rows removed.
pub async fn purge(tx: &mut PgConnection, user_id: Uuid) -> anyhow::Result<u64> {
    let live = crate::store::alerts::live_of_user(tx, user_id).await?;
    for (alert_id, symbol) in &live {
        crate::saga::release(tx, *alert_id, symbol).await?;
    }
    Ok(crate::store::users::purge(tx, user_id).await?)
}

/// The purge as the deletion saga wants it.
pub fn purge_fn() -> mirai_platform::events::deletion::Purge {
    Arc::new(|tx, user_id| Box::pin(purge(tx, user_id)))
}
