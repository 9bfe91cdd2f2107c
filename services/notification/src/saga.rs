//! The alert-activation saga (with stock-data) and the lifecycle sweeps.
//!
//! A new (or re-enabled) alert is stored PENDING and `alert.requested` is written to the
//! outbox in the same transaction. stock-data answers `symbol.tracking.confirmed` (→ ACTIVE,
//! `alert.activated`) or `symbol.tracking.rejected` (the compensation: → REJECTED with the
//! reason shown to the user, `alert.rejected`). Without an answer the sweep asks again, with
//! the same alert id (stock-data's tracking reference `alert:{id}` makes that idempotent) and a
//! growing wait, and after the configured attempts marks the alert EXPIRED with a reason and
//! tells the user. Every change of state also tells the user with an in-app notification.
//!
//! Whenever an alert stops needing the symbol (deleted, disabled, expired, triggered once,
//! rejected late, its user deleted) `symbol.tracking.released` goes out, in the same
//! transaction; stock-data ignores releases of references it does not hold.

use std::time::Duration;

use chrono::Utc;
use futures::future::BoxFuture;
use mirai_platform::events::Envelope;
use mirai_platform::events::outbox;
use mirai_proto::events::v1 as ev;
use mirai_proto::notification::v1 as pb;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SERVICE;
use crate::context::Context;
use crate::domain::alert::Status;
use crate::notify::Outgoing;
use crate::store::alerts;

/// Writes `alert.requested` (attempt `attempt`) for `row`.
pub async fn request(tx: &mut PgConnection, row: &alerts::Row, attempt: u32) -> anyhow::Result<()> {
    let event = ev::AlertRequested {
        alert_id: row.alert_id.to_string(),
        user_id: row.user_id.to_string(),
        symbol: row.symbol.clone(),
        attempt,
    };
    outbox::enqueue(tx, SERVICE, &event, Some(row.alert_id.to_string())).await?;
    Ok(())
}

/// Writes `symbol.tracking.released` for an alert.
pub async fn release(tx: &mut PgConnection, alert_id: Uuid, symbol: &str) -> anyhow::Result<()> {
    let event = ev::SymbolTrackingReleased {
        alert_id: alert_id.to_string(),
        symbol: symbol.to_owned(),
        reference: format!("alert:{alert_id}"),
    };
    outbox::enqueue(tx, SERVICE, &event, Some(alert_id.to_string())).await?;
    Ok(())
}

/// Tells the owner about a change of their alert's state (in-app, category ALERT_STATUS).
pub async fn tell(
    ctx: &Context,
    tx: &mut PgConnection,
    row: &alerts::Row,
    title: String,
    body: String,
    dedupe: &str,
) -> anyhow::Result<()> {
    ctx.fanout
        .send(
            tx,
            &Outgoing {
                user_id: row.user_id,
                category: pb::Category::AlertStatus,
                critical: false,
                title,
                body,
                data: serde_json::json!({
                    "alert_id": row.alert_id.to_string(),
                    "symbol": row.symbol,
                    "status": row.status,
                    "reason": row.status_reason,
                }),
                alert_id: Some(row.alert_id),
                symbol: row.symbol.clone(),
                dedupe_key: Some(format!("status:{}:{dedupe}", row.alert_id)),
                channels: Vec::new(),
                webhook_endpoint_ids: Vec::new(),
            },
            Utc::now(),
        )
        .await?;
    Ok(())
}

fn label(row: &alerts::Row) -> String {
    if row.name.is_empty() {
        format!("Your {} alert", row.symbol)
    } else {
        format!("Your alert \"{}\" on {}", row.name, row.symbol)
    }
}

fn alert_id(raw: &str) -> Option<Uuid> {
    raw.parse().ok()
}

pub fn on_confirmed<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::SymbolTrackingConfirmed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(id) = alert_id(&e.alert_id) else {
            return Ok(());
        };
        let Some(row) = alerts::lock(tx, id).await? else {
            // Deleted while the request was under way: give the reference back.
            release(tx, id, &e.symbol).await?;
            return Ok(());
        };
        match row.status() {
            Status::Pending => {
                let row = alerts::activate(tx, &row).await?;
                let event = ev::AlertActivated {
                    alert_id: row.alert_id.to_string(),
                    user_id: row.user_id.to_string(),
                    symbol: row.symbol.clone(),
                };
                outbox::enqueue(tx, SERVICE, &event, envelope.correlation_id.clone()).await?;
                tell(
                    ctx,
                    tx,
                    &row,
                    format!("{} alert active", row.symbol),
                    format!("{} is now being watched.", label(&row)),
                    &format!("active:{}", envelope.id),
                )
                .await?;
                tracing::info!(message = "Alert activated.", alert_id = %id, symbol = %row.symbol);
            }
            // Confirmed again (a re-request answered twice): nothing changes.
            Status::Active => {}
            // Too late (expired after the retries, switched off meanwhile): not needed.
            _ => release(tx, id, &row.symbol).await?,
        }
        Ok(())
    })
}

pub fn on_rejected<'a>(
    ctx: &'a Context,
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    e: ev::SymbolTrackingRejected,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let Some(id) = alert_id(&e.alert_id) else {
            return Ok(());
        };
        let Some(row) = alerts::lock(tx, id).await? else {
            return Ok(());
        };
        if row.status() != Status::Pending {
            return Ok(());
        }
        let reason = if e.reason.is_empty() {
            format!("{} cannot be tracked", e.symbol)
        } else {
            e.reason.clone()
        };
        let row = alerts::set_status(tx, id, Status::Rejected, &reason).await?;
        let event = ev::AlertRejected {
            alert_id: row.alert_id.to_string(),
            user_id: row.user_id.to_string(),
            symbol: row.symbol.clone(),
            reason: reason.clone(),
            rejection: e.rejection,
        };
        outbox::enqueue(tx, SERVICE, &event, envelope.correlation_id.clone()).await?;
        tell(
            ctx,
            tx,
            &row,
            format!("{} alert rejected", row.symbol),
            format!("{} was rejected: {reason}.", label(&row)),
            &format!("rejected:{}", envelope.id),
        )
        .await?;
        tracing::info!(message = "Alert rejected.", alert_id = %id, %reason);
        Ok(())
    })
}

/// A delisted symbol's live alerts are disabled (and their tracking released); owners are told.
pub async fn disable_for_delisting(
    ctx: &Context,
    tx: &mut PgConnection,
    envelope: &Envelope,
    symbol: &str,
    why: &str,
) -> anyhow::Result<()> {
    let ids = alerts::lock_live_on(tx, symbol).await?;
    let reason = if why.is_empty() {
        format!("{symbol} was delisted")
    } else {
        format!("{symbol} was delisted: {why}")
    };
    for id in ids {
        let row = alerts::set_status(tx, id, Status::Disabled, &reason).await?;
        alerts::switch_off(tx, id).await?;
        release(tx, id, symbol).await?;
        tell(
            ctx,
            tx,
            &row,
            format!("{symbol} alert disabled"),
            format!("{} was switched off: {reason}.", label(&row)),
            &format!("delisted:{}", envelope.id),
        )
        .await?;
    }
    Ok(())
}

// === Sweeps ===

/// One pass: re-request stuck activations, expire the ones out of attempts, expire alerts
/// past their expiry. Each alert in its own short transaction.
pub async fn sweep(ctx: &Context) -> anyhow::Result<usize> {
    let settings = ctx.config.saga;
    let mut changed = 0;
    let due = alerts::activations_due(&ctx.pool).await?;
    for id in due {
        let mut tx = ctx.pool.begin().await?;
        let Some(row) = alerts::lock(&mut tx, id).await? else {
            continue;
        };
        if row.status() != Status::Pending || row.saga_attempt < 0 {
            continue;
        }
        let attempt = row.saga_attempt as u32 + 1;
        if attempt >= settings.activation_attempts {
            let reason = format!(
                "the market-data service did not confirm tracking of {} after {} requests",
                row.symbol, settings.activation_attempts
            );
            let row = alerts::set_status(&mut tx, id, Status::Expired, &reason).await?;
            let event = ev::AlertRejected {
                alert_id: row.alert_id.to_string(),
                user_id: row.user_id.to_string(),
                symbol: row.symbol.clone(),
                reason: reason.clone(),
                rejection: ev::TrackingRejection::Unspecified.into(),
            };
            outbox::enqueue(&mut tx, SERVICE, &event, Some(id.to_string())).await?;
            release(&mut tx, id, &row.symbol).await?;
            tell(
                ctx,
                &mut tx,
                &row,
                format!("{} alert expired", row.symbol),
                format!("{} could not be activated: {reason}.", label(&row)),
                "activation-expired",
            )
            .await?;
            tracing::warn!(message = "Alert activation expired.", alert_id = %id);
        } else {
            // Wait twice as long as before for this answer.
            let wait = settings
                .activation_timeout
                .saturating_mul(2u32.saturating_pow(attempt.min(10)));
            alerts::schedule_activation(&mut tx, id, attempt as i32, wait).await?;
            request(&mut tx, &row, attempt).await?;
            tracing::info!(message = "Alert activation requested again.", alert_id = %id, attempt);
        }
        tx.commit().await?;
        changed += 1;
    }
    let expiring = alerts::expired(&ctx.pool).await?;
    for id in expiring {
        let mut tx = ctx.pool.begin().await?;
        let Some(row) = alerts::lock(&mut tx, id).await? else {
            continue;
        };
        if !matches!(
            row.status(),
            Status::Pending | Status::Active | Status::Disabled
        ) {
            continue;
        }
        let was_live = row.status().is_live();
        let when = row
            .expires_at
            .map(crate::public::rfc3339)
            .unwrap_or_default();
        let reason = format!("expired at {when}");
        let row = alerts::set_status(&mut tx, id, Status::Expired, &reason).await?;
        if was_live {
            release(&mut tx, id, &row.symbol).await?;
        }
        tell(
            ctx,
            &mut tx,
            &row,
            format!("{} alert expired", row.symbol),
            format!("{} {reason}.", label(&row)),
            "expired",
        )
        .await?;
        tx.commit().await?;
        changed += 1;
    }
    Ok(changed)
}

/// Runs [`sweep`] every `interval` until `stop`, pruning old price history now and then.
pub async fn run_sweeps(ctx: crate::context::Shared, interval: Duration, stop: CancellationToken) {
    let mut passes: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = sweep(&ctx).await {
            tracing::warn!(message = "Alert sweep failed.", error = %format!("{error:#}"));
        }
        passes += 1;
        if passes.is_multiple_of(720)
            && let Err(error) = crate::store::market::prune_history(&ctx.pool).await
        {
            tracing::warn!(message = "Price history prune failed.", %error);
        }
    }
}
