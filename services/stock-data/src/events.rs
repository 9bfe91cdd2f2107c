//! The consumed events: the tracked-symbol set, with a reference per holder, this service's
//! part in the alert-activation saga, and its part in the account-deletion saga (a user's
//! watchlist references purged).
//!
//! A symbol is tracked while at least one reference holds it: `alert:{alert_id}` (an alert of
//! the notification service) or `watchlist:{user_id}` (a user's watchlist). References are
//! idempotent: adding one twice or removing an absent one changes nothing. Every change locks
//! the symbol's row first, so the count on `symbols` and the saga replies of one symbol commit
//! in order.
//!
//! Events in: `alert.requested` → `symbol.tracking.confirmed` (known, active symbol; reference
//! added) or `symbol.tracking.rejected` (unknown, delisted, or the set is full);
//! `symbol.tracking.released` → the alert's reference removed; `user.watchlist.changed` → the
//! user's `watchlist:` references made equal to the watchlist. Duplicate deliveries are
//! skipped by the platform inbox, so each request gets exactly one answer.
//!
//! The statements (references, counts, the capacity check) are in [`crate::store::tracking`].

use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::events::consumer::Handler;
use mirai_platform::events::topology::topics;
use mirai_platform::events::{Envelope, outbox};
use mirai_proto::events::v1 as ev;
use sqlx::PgConnection;

use crate::SERVICE;
use crate::domain::{Reference, Ticker};
use crate::store;
use crate::store::tracking::Tracked;

// === Event handlers ===

/// Registers the saga and watchlist handlers on this service's subscriptions.
pub fn consume(app: &mut ServiceApp, capacity: u32) {
    let notification = app
        .consumer(topics::NOTIFICATION)
        .on::<ev::AlertRequested, _>("tracking.alert-requested", OnAlertRequested { capacity })
        .on::<ev::SymbolTrackingReleased, _>("tracking.released", on_released);
    app.consume(notification);
    let user = app
        .consumer(topics::USER)
        .on::<ev::UserWatchlistChanged, _>(
            "tracking.watchlist-changed",
            OnWatchlistChanged { capacity },
        );
    let user = mirai_platform::events::deletion::participate(
        user,
        SERVICE,
        topics::STOCK,
        std::sync::Arc::new(purge_user),
    );
    app.consume(user);
}

/// The account-deletion saga's purge: the user's watchlist references, releasing the tracking
/// that only they held. Returns the references removed.
fn purge_user(tx: &mut PgConnection, user_id: uuid::Uuid) -> BoxFuture<'_, anyhow::Result<u64>> {
    Box::pin(async move {
        let reference =
            Reference::watchlist(&user_id.to_string()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let held = store::tracking::held(tx, &reference).await?;
        for symbol in &held {
            let ticker = Ticker::parse(symbol).map_err(|e| anyhow::anyhow!("{e}"))?;
            store::tracking::untrack(tx, &ticker, &reference).await?;
        }
        Ok(held.len() as u64)
    })
}

struct OnAlertRequested {
    capacity: u32,
}

impl Handler<ev::AlertRequested> for OnAlertRequested {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        envelope: &'a Envelope,
        e: ev::AlertRequested,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            // The saga id travels on: the request's correlation id, or the alert itself.
            let correlation = envelope
                .correlation_id
                .clone()
                .or_else(|| Some(e.alert_id.clone()));
            let reject =
                |rejection: ev::TrackingRejection, reason: String| ev::SymbolTrackingRejected {
                    alert_id: e.alert_id.clone(),
                    symbol: e.symbol.clone(),
                    rejection: rejection.into(),
                    reason,
                };
            let (ticker, reference) =
                match (Ticker::parse(&e.symbol), Reference::alert(&e.alert_id)) {
                    (Ok(ticker), Ok(reference)) => (ticker, reference),
                    (Err(_), _) => {
                        let event = reject(
                            ev::TrackingRejection::UnknownSymbol,
                            format!("`{}` is not a ticker", e.symbol),
                        );
                        outbox::enqueue(tx, SERVICE, &event, correlation).await?;
                        return Ok(());
                    }
                    (_, Err(_)) => {
                        let event = reject(
                            ev::TrackingRejection::Unspecified,
                            format!("`{}` is not a valid alert id", e.alert_id),
                        );
                        outbox::enqueue(tx, SERVICE, &event, correlation).await?;
                        return Ok(());
                    }
                };
            match store::tracking::track(tx, &ticker, &reference, self.capacity).await? {
                Tracked::Held { state, .. } => {
                    let event = ev::SymbolTrackingConfirmed {
                        alert_id: e.alert_id.clone(),
                        symbol: ticker.as_str().to_owned(),
                        reference: reference.as_str().to_owned(),
                        reference_count: state.reference_count.max(0) as u32,
                    };
                    outbox::enqueue(tx, SERVICE, &event, correlation).await?;
                    tracing::info!(message = "Tracking confirmed.", symbol = ticker.as_str(), alert_id = %e.alert_id);
                }
                Tracked::Unknown => {
                    let event = reject(
                        ev::TrackingRejection::UnknownSymbol,
                        format!("{} is not a listed symbol", ticker.as_str()),
                    );
                    outbox::enqueue(tx, SERVICE, &event, correlation).await?;
                }
                Tracked::Delisted(why) => {
                    let reason = if why.is_empty() {
                        format!("{} is delisted", ticker.as_str())
                    } else {
                        format!("{} is delisted: {why}", ticker.as_str())
                    };
                    let event = reject(ev::TrackingRejection::Delisted, reason);
                    outbox::enqueue(tx, SERVICE, &event, correlation).await?;
                }
                Tracked::Full(capacity) => {
                    let event = reject(
                        ev::TrackingRejection::Capacity,
                        format!("the platform tracks at most {capacity} symbols"),
                    );
                    outbox::enqueue(tx, SERVICE, &event, correlation).await?;
                }
            }
            Ok(())
        })
    }
}

fn on_released<'a>(
    tx: &'a mut PgConnection,
    _: &'a Envelope,
    e: ev::SymbolTrackingReleased,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let reference = if e.reference.is_empty() {
            Reference::alert(&e.alert_id)
        } else {
            Reference::parse(&e.reference)
        };
        // A release for something never held (or malformed) has nothing to undo.
        let (Ok(ticker), Ok(reference)) = (Ticker::parse(&e.symbol), reference) else {
            tracing::warn!(message = "Release ignored: not a ticker or reference.", symbol = %e.symbol, reference = %e.reference);
            return Ok(());
        };
        store::tracking::untrack(tx, &ticker, &reference).await?;
        Ok(())
    })
}

struct OnWatchlistChanged {
    capacity: u32,
}

impl Handler<ev::UserWatchlistChanged> for OnWatchlistChanged {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _: &'a Envelope,
        e: ev::UserWatchlistChanged,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Ok(reference) = Reference::watchlist(&e.user_id) else {
                tracing::warn!(message = "Watchlist change ignored: bad user id.", user_id = %e.user_id);
                return Ok(());
            };
            // The event carries the whole list, so the references are made equal to it (which
            // also heals a missed earlier change).
            let wanted: Vec<Ticker> = e
                .symbols
                .iter()
                .filter_map(|s| Ticker::parse(s).ok())
                .collect();
            let held = store::tracking::held_sorted(tx, &reference).await?;
            for symbol in &held {
                if !wanted.iter().any(|t| t.as_str() == symbol) {
                    let ticker = Ticker::parse(symbol).map_err(|e| anyhow::anyhow!("{e}"))?;
                    store::tracking::untrack(tx, &ticker, &reference).await?;
                }
            }
            for ticker in &wanted {
                if held.iter().any(|s| s == ticker.as_str()) {
                    continue;
                }
                match store::tracking::track(tx, ticker, &reference, self.capacity).await? {
                    Tracked::Held { .. } => {}
                    other => {
                        tracing::info!(message = "Watchlist symbol not tracked.", symbol = ticker.as_str(), outcome = ?other)
                    }
                }
            }
            Ok(())
        })
    }
}
