//! The participant side of the account-deletion saga, shared by every service that holds user
//! data.
//!
//! The user service marks an account `DELETING` and publishes `user.deletion.requested` naming
//! the participants it waits for. Each participant registers [`participate`] on its
//! `user-events` consumer with a purge function over its own tables; the handler runs the purge
//! and enqueues `user.data.purged` on the participant's own topic in the same transaction (the
//! inbox row too), so a crash either loses both or neither and a redelivery confirms again
//! with nothing left to remove. Reminders (a repeated request with a higher `attempt`) are
//! answered the same way.

use std::sync::Arc;

use futures::future::BoxFuture;
use mirai_proto::events::v1 as ev;
use sqlx::PgConnection;
use uuid::Uuid;

use super::consumer::{Consumer, Handler};
use super::envelope::Envelope;
use super::outbox;

/// Deletes everything a service holds about one user, in the given transaction, and returns
/// how many rows or objects it removed.
pub type Purge = Arc<
    dyn for<'a> Fn(&'a mut PgConnection, Uuid) -> BoxFuture<'a, anyhow::Result<u64>> + Send + Sync,
>;

/// Registers the deletion-saga participant `service` (its `ce-source` name, e.g.
/// `"stock-data"`, which is also its name in the user service's participant list) on
/// `consumer`, a consumer of the user-events topic. Confirmations go to `topic`, the
/// participant's own.
pub fn participate(
    consumer: Consumer,
    service: &'static str,
    topic: &'static str,
    purge: Purge,
) -> Consumer {
    consumer.on::<ev::UserDeletionRequested, _>(
        "deletion-saga.participant",
        Participant {
            service,
            topic,
            purge,
        },
    )
}

struct Participant {
    service: &'static str,
    topic: &'static str,
    purge: Purge,
}

impl Handler<ev::UserDeletionRequested> for Participant {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        event: ev::UserDeletionRequested,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            // A request addressed to others (e.g. a reminder to a stalled participant).
            if !event.participants.iter().any(|p| p == self.service) {
                return Ok(());
            }
            let user_id = Uuid::parse_str(&event.user_id)
                .map_err(|_| anyhow::anyhow!("user_id {:?} is not a UUID", event.user_id))?;
            let items_purged = (self.purge)(tx, user_id).await?;
            let confirmation = ev::UserDataPurged {
                user_id: event.user_id,
                participant: self.service.to_owned(),
                items_purged,
                attempt: event.attempt,
            };
            outbox::enqueue_on(
                tx,
                self.service,
                self.topic,
                &confirmation,
                envelope.correlation_id.clone(),
            )
            .await?;
            tracing::info!(
                message = "User data purged.",
                user_id = %user_id,
                items_purged,
                attempt = event.attempt
            );
            Ok(())
        })
    }
}
