//! The user side of the account-deletion saga (choreographed, no orchestrator).
//!
//! 1. [`request`]: the account becomes `deleting` (no more logins; sessions and API keys are
//!    revoked at once), a saga row with one row per configured participant is written, and
//!    `user.deletion.requested` naming them goes into the outbox — all in one transaction.
//! 2. Every participant purges its data and answers `user.data.purged` on its own topic;
//!    [`on_purged`] records each confirmation (idempotently: a repeated one changes nothing).
//! 3. When the last outstanding participant has confirmed, [`complete`] erases credentials and
//!    personal data (the account row stays as a tombstone holding only its id and status),
//!    writes the audit entry and emits `user.deleted`, in the confirming handler's
//!    transaction.
//!
//! A participant that stays silent for `remind_after` gets the request again (with the
//! `attempt` counter raised) from the [`sweep`] task; until then the saga shows `DELETING`
//! with that participant outstanding, which is what an operator or the user sees.

use std::time::Duration;

use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::events::{Envelope, outbox};
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::user::v1 as pb;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SERVICE;
use crate::config::DeletionConfig;
use crate::error::{Error, Result, db};
use crate::store;
use crate::store::audit::Entry;

type Kind = pb::AuditEventKind;

/// Starts the saga for `user_id` (or returns the one already under way or finished).
pub async fn request(
    pool: &PgPool,
    config: &DeletionConfig,
    user_id: Uuid,
    actor: Option<Uuid>,
    client: Option<&pb::ClientContext>,
) -> Result<pb::DeletionStatus> {
    let mut tx = pool.begin().await?;
    let user = store::users::user_for_update(&mut tx, user_id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    if !user.is_active() {
        // Asked again: the saga already exists; answer with its progress.
        drop(tx);
        return status(pool, user_id).await;
    }
    let correlation_id = Uuid::now_v7();
    store::deletion::mark_deleting(&mut *tx, user_id)
        .await
        .map_err(db("account"))?;
    let revoked = store::sessions::revoke_all_families(&mut *tx, user_id, "account_deletion")
        .await
        .map_err(db("session"))?;
    store::api_keys::revoke_all(&mut *tx, user_id)
        .await
        .map_err(db("api key"))?;
    store::deletion::insert_saga(&mut *tx, user_id, correlation_id)
        .await
        .map_err(db("deletion"))?;
    for (position, participant) in config.participants.iter().enumerate() {
        store::deletion::insert_participant(&mut *tx, user_id, participant, position as i16)
            .await
            .map_err(db("deletion"))?;
    }
    let mut entry = Entry::new(Kind::DeletionRequested, client)
        .user(user_id)
        .detail("participants", config.participants.join(","))
        .detail("revoked_families", revoked.to_string());
    if let Some(actor) = actor.filter(|a| *a != user_id) {
        entry = entry.actor(actor);
    }
    entry.write(&mut *tx).await.map_err(db("audit"))?;
    if config.participants.is_empty() {
        complete(&mut tx, user_id).await.map_err(db("deletion"))?;
    } else {
        let event = ev::UserDeletionRequested {
            user_id: user_id.to_string(),
            participants: config.participants.clone(),
            attempt: 0,
        };
        outbox::enqueue(&mut tx, SERVICE, &event, Some(correlation_id.to_string()))
            .await
            .map_err(db("event"))?;
    }
    tx.commit().await?;
    tracing::info!(message = "Account deletion requested.", user_id = %user_id, participants = ?config.participants);
    status(pool, user_id).await
}

/// The saga's progress; `NOT_FOUND` when no deletion was requested.
pub async fn status(pool: &PgPool, user_id: Uuid) -> Result<pb::DeletionStatus> {
    let saga = store::deletion::saga(pool, user_id)
        .await?
        .ok_or_else(|| Error::NotFound("no deletion was requested for this account".into()))?;
    let participants = store::deletion::participants(pool, user_id).await?;
    Ok(pb::DeletionStatus {
        user_id: user_id.to_string(),
        account_status: if saga.status == "deleted" {
            pb::AccountStatus::Deleted
        } else {
            pb::AccountStatus::Deleting
        }
        .into(),
        requested_at: Some(wire::timestamp(saga.requested_at)),
        completed_at: saga.completed_at.map(wire::timestamp),
        participants: participants
            .into_iter()
            .map(|p| pb::ParticipantProgress {
                participant: p.participant,
                purged: p.purged_at.is_some(),
                purged_at: p.purged_at.map(wire::timestamp),
                items_purged: p.items_purged.max(0) as u64,
                reminders_sent: p.reminders_sent.max(0) as u32,
                last_requested_at: Some(wire::timestamp(p.last_requested_at)),
            })
            .collect(),
        correlation_id: saga.correlation_id.to_string(),
    })
}

/// Erases the account: credentials, sessions, API keys, profile, and the IP and user agent in
/// its audit entries (the entries themselves, keyed by the now anonymous id, are kept as the
/// security record). Emits `user.deleted`.
async fn complete(tx: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    store::deletion::erase(&mut *tx, user_id).await?;
    Entry::new(Kind::Deleted, None)
        .user(user_id)
        .write(&mut *tx)
        .await?;
    let correlation = store::deletion::correlation_id(&mut *tx, user_id).await?;
    let event = ev::UserDeleted {
        user_id: user_id.to_string(),
    };
    outbox::enqueue(tx, SERVICE, &event, correlation.map(|c| c.to_string())).await?;
    tracing::info!(message = "Account deleted.", user_id = %user_id);
    Ok(())
}

/// A participant's confirmation: recorded once; the last one completes the deletion.
pub(crate) fn on_purged<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    event: ev::UserDataPurged,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let user_id = Uuid::parse_str(&event.user_id)
            .map_err(|_| anyhow::anyhow!("user_id {:?} is not a UUID", event.user_id))?;
        // Lock the account: confirmations of one saga are handled one at a time, so exactly
        // one of them sees "none outstanding" and completes it.
        let status = store::deletion::lock_account_status(&mut *tx, user_id).await?;
        if status.as_deref() != Some("deleting") {
            // Unknown account, or a late duplicate after completion.
            return Ok(());
        }
        let recorded = store::deletion::record_purged(
            &mut *tx,
            user_id,
            &event.participant,
            event.items_purged.min(i64::MAX as u64) as i64,
        )
        .await?;
        if !recorded {
            return Ok(());
        }
        tracing::info!(message = "Deletion participant confirmed.", user_id = %user_id, participant = %event.participant, items_purged = event.items_purged);
        let outstanding = store::deletion::outstanding(&mut *tx, user_id).await?;
        if outstanding == 0 {
            complete(tx, user_id).await?;
        }
        Ok(())
    })
}

/// Sends the request again to participants silent for longer than `remind_after`; returns how
/// many sagas were reminded. Rows are claimed with `SKIP LOCKED`, so replicas share the work.
pub async fn remind_stalled(pool: &PgPool, remind_after: Duration) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let stalled = store::deletion::stalled(&mut *tx, remind_after).await?;
    let mut by_user: Vec<(Uuid, Uuid, Vec<String>, u32)> = Vec::new();
    for (user_id, participant, reminders, correlation) in stalled {
        match by_user.last_mut() {
            Some((u, _, names, attempt)) if *u == user_id => {
                names.push(participant);
                *attempt = (*attempt).max(reminders as u32 + 1);
            }
            _ => by_user.push((
                user_id,
                correlation,
                vec![participant],
                reminders as u32 + 1,
            )),
        }
    }
    for (user_id, correlation, participants, attempt) in &by_user {
        store::deletion::mark_reminded(&mut *tx, *user_id, participants).await?;
        let event = ev::UserDeletionRequested {
            user_id: user_id.to_string(),
            participants: participants.clone(),
            attempt: *attempt,
        };
        outbox::enqueue(&mut tx, SERVICE, &event, Some(correlation.to_string())).await?;
        tracing::warn!(message = "Deletion participants stalled; request sent again.", user_id = %user_id, participants = ?participants, attempt);
    }
    tx.commit().await?;
    Ok(by_user.len())
}

/// Runs [`remind_stalled`] every `sweep_interval` until shutdown.
pub fn sweep(app: &mut ServiceApp, config: &DeletionConfig) {
    let pool = app.pool.clone();
    let (every, after) = (config.sweep_interval, config.remind_after);
    app.background("deletion-reminders", move |stop: CancellationToken| {
        Box::pin(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Err(error) = remind_stalled(&pool, after).await {
                    tracing::warn!(message = "Deletion reminder sweep failed.", %error);
                }
            }
        })
    });
}
