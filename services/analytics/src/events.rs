//! Event handlers: the bar read model (`stock.bar.closed`), next to the symbol read model on
//! the `analytics.stock-events` subscription, and the account-deletion saga on
//! `analytics.user-events`.
//!
//! Both run through the platform's idempotent consumer: a redelivered event (same `ce-id`) is
//! skipped by the inbox, and the bar upsert itself is idempotent on (symbol, timeframe, start),
//! so the same bar published twice under different ids also changes nothing.

use std::sync::Arc;

use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::events::Envelope;
use mirai_platform::events::consumer::Batching;
use mirai_platform::events::deletion;
use mirai_platform::events::topology::topics;
use mirai_proto::events::v1 as ev;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::SERVICE;
use crate::domain::Bar;
use crate::store::bars::{self, Provenance};
use crate::store::reports;

/// Registers every consumer of the service.
pub fn consume(app: &mut ServiceApp) {
    // Batched: a replay or a bulk catch-up closes bars of one symbol back to back (one
    // ordering key, so one at a time), and one commit per bar would bound the read model at
    // the disk's fsync rate.
    let stock = crate::symbols::register(app.consumer(topics::STOCK).batched(Batching::default()))
        .on::<ev::BarClosed, _>("bars.closed", on_bar_closed);
    app.consume(stock);
    let user = deletion::participate(
        app.consumer(topics::USER),
        SERVICE,
        topics::ANALYTICS,
        Arc::new(purge_user),
    );
    app.consume(user);
}

/// Upserts the closed bar. Still-forming bars are not stored: the read model holds closed
/// bars only.
fn on_bar_closed<'a>(
    tx: &'a mut PgConnection,
    envelope: &'a Envelope,
    event: ev::BarClosed,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let wire = event
            .bar
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("bar.closed without a bar"))?;
        let bar = Bar::from_wire(wire)?;
        let applied = bars::upsert(
            tx,
            std::slice::from_ref(&bar),
            &Provenance {
                adjustment: event.adjustment,
                source: event.source,
                as_of: envelope.time,
            },
        )
        .await?;
        tracing::debug!(
            message = "Bar applied.",
            symbol = %bar.symbol,
            start = %bar.start,
            inserted = applied.inserted,
            updated = applied.updated
        );
        Ok(())
    })
}

/// The deletion saga's purge: every report job of the user and its files. Returns the jobs
/// plus the files removed.
fn purge_user(tx: &mut PgConnection, user_id: Uuid) -> BoxFuture<'_, anyhow::Result<u64>> {
    Box::pin(async move { Ok(reports::purge_user(tx, user_id).await?) })
}
