//! The tracked-symbol set, with a reference per holder, and this service's part in the
//! alert-activation saga.
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

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use mirai_platform::app::ServiceApp;
use mirai_platform::events::consumer::Handler;
use mirai_platform::events::topology::topics;
use mirai_platform::events::{Envelope, outbox};
use mirai_platform::wire;
use mirai_proto::events::v1 as ev;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::SERVICE;
use crate::domain::{Reference, Ticker};

/// A symbol's tracking state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct State {
    pub symbol: String,
    pub reference_count: i32,
    pub tracked_since: Option<DateTime<Utc>>,
}

impl From<State> for pb::TrackingState {
    fn from(s: State) -> Self {
        Self {
            tracked: s.reference_count > 0,
            reference_count: s.reference_count.max(0) as u32,
            tracked_since: s.tracked_since.map(wire::timestamp),
            symbol: s.symbol,
        }
    }
}

/// What [`track`] did.
#[derive(Debug)]
pub enum Tracked {
    /// Held (`added` false when the reference was already there).
    Held { state: State, added: bool },
    /// No such symbol was ever listed.
    Unknown,
    /// The symbol is delisted (with the delisting reason).
    Delisted(String),
    /// Tracking one more symbol would exceed the configured capacity.
    Full(u32),
}

#[derive(sqlx::FromRow)]
struct Locked {
    status: String,
    delisting_reason: String,
    reference_count: i32,
}

async fn lock(conn: &mut PgConnection, ticker: &Ticker) -> Result<Option<Locked>, sqlx::Error> {
    sqlx::query_as(
        "SELECT status, delisting_reason, reference_count FROM symbols
         WHERE symbol = $1 FOR UPDATE",
    )
    .bind(ticker.as_str())
    .fetch_optional(conn)
    .await
}

/// Adds `reference` to `ticker`'s tracking, in the caller's transaction. The capacity is a
/// limit on distinct tracked symbols; a symbol already tracked always accepts more references.
pub async fn track(
    conn: &mut PgConnection,
    ticker: &Ticker,
    reference: &Reference,
    capacity: u32,
) -> Result<Tracked, sqlx::Error> {
    let Some(locked) = lock(conn, ticker).await? else {
        return Ok(Tracked::Unknown);
    };
    if locked.status != "active" {
        return Ok(Tracked::Delisted(locked.delisting_reason));
    }
    if locked.reference_count == 0 {
        let tracked: i64 =
            sqlx::query_scalar("SELECT count(*) FROM symbols WHERE reference_count > 0")
                .fetch_one(&mut *conn)
                .await?;
        if tracked >= i64::from(capacity) {
            return Ok(Tracked::Full(capacity));
        }
    }
    let added = sqlx::query(
        "INSERT INTO tracking_references (symbol, reference) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(ticker.as_str())
    .bind(reference.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let state: State = sqlx::query_as(
        "UPDATE symbols SET reference_count = reference_count + $2,
                tracked_since = coalesce(tracked_since, now())
         WHERE symbol = $1 RETURNING symbol, reference_count, tracked_since",
    )
    .bind(ticker.as_str())
    .bind(i32::from(added))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Tracked::Held { state, added })
}

/// Removes `reference` from `ticker`'s tracking; tracking stops with the last one. Returns the
/// state after and whether a reference was removed; `None` for an unknown symbol.
pub async fn untrack(
    conn: &mut PgConnection,
    ticker: &Ticker,
    reference: &Reference,
) -> Result<Option<(State, bool)>, sqlx::Error> {
    if lock(conn, ticker).await?.is_none() {
        return Ok(None);
    }
    let removed =
        sqlx::query("DELETE FROM tracking_references WHERE symbol = $1 AND reference = $2")
            .bind(ticker.as_str())
            .bind(reference.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1;
    let state: State = sqlx::query_as(
        "UPDATE symbols SET reference_count = reference_count - $2,
                tracked_since = CASE WHEN reference_count - $2 = 0 THEN NULL ELSE tracked_since END
         WHERE symbol = $1 RETURNING symbol, reference_count, tracked_since",
    )
    .bind(ticker.as_str())
    .bind(i32::from(removed))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some((state, removed)))
}

/// Tracked symbols by ticker after `after`, at most `limit` + 1 (the extra one says another
/// page exists).
pub async fn list(pool: &PgPool, after: &str, limit: u32) -> Result<Vec<State>, sqlx::Error> {
    sqlx::query_as(
        "SELECT symbol, reference_count, tracked_since FROM symbols
         WHERE reference_count > 0 AND symbol > $1 ORDER BY symbol LIMIT $2",
    )
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await
}

/// Every tracked symbol (the live adapter streams these unless told otherwise).
pub async fn tracked_symbols(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT symbol FROM symbols WHERE reference_count > 0 ORDER BY symbol")
        .fetch_all(pool)
        .await
}

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
        let held: Vec<String> =
            sqlx::query_scalar("SELECT symbol FROM tracking_references WHERE reference = $1")
                .bind(reference.as_str())
                .fetch_all(&mut *tx)
                .await?;
        for symbol in &held {
            let ticker = Ticker::parse(symbol).map_err(|e| anyhow::anyhow!("{e}"))?;
            untrack(tx, &ticker, &reference).await?;
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
            match track(tx, &ticker, &reference, self.capacity).await? {
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
        untrack(tx, &ticker, &reference).await?;
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
            let held: Vec<String> = sqlx::query_scalar(
                "SELECT symbol FROM tracking_references WHERE reference = $1 ORDER BY symbol",
            )
            .bind(reference.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for symbol in &held {
                if !wanted.iter().any(|t| t.as_str() == symbol) {
                    let ticker = Ticker::parse(symbol).map_err(|e| anyhow::anyhow!("{e}"))?;
                    untrack(tx, &ticker, &reference).await?;
                }
            }
            for ticker in &wanted {
                if held.iter().any(|s| s == ticker.as_str()) {
                    continue;
                }
                match track(tx, ticker, &reference, self.capacity).await? {
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
