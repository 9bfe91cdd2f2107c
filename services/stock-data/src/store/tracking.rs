//! The tracked-symbol set: references per holder and the count on `symbols`.
//!
//! Every change locks the symbol's row first, so the count on `symbols` and the saga replies of
//! one symbol commit in order.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;
use sqlx::{PgConnection, PgPool};

use crate::domain::{Reference, Ticker};

/// A symbol's tracking state.
#[derive(Debug, Clone)]
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

struct Locked {
    status: String,
    delisting_reason: String,
    reference_count: i32,
}

async fn lock(conn: &mut PgConnection, ticker: &Ticker) -> Result<Option<Locked>, sqlx::Error> {
    sqlx::query_as!(
        Locked,
        "SELECT status, delisting_reason, reference_count FROM symbols
         WHERE symbol = $1 FOR UPDATE",
        ticker.as_str(),
    )
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
        let tracked: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM symbols WHERE reference_count > 0"#
        )
        .fetch_one(&mut *conn)
        .await?;
        if tracked >= i64::from(capacity) {
            return Ok(Tracked::Full(capacity));
        }
    }
    let added = sqlx::query!(
        "INSERT INTO tracking_references (symbol, reference) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
        ticker.as_str(),
        reference.as_str(),
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let state: State = sqlx::query_as!(
        State,
        "UPDATE symbols SET reference_count = reference_count + $2,
                tracked_since = coalesce(tracked_since, now())
         WHERE symbol = $1 RETURNING symbol, reference_count, tracked_since",
        ticker.as_str(),
        i32::from(added),
    )
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
    let removed = sqlx::query!(
        "DELETE FROM tracking_references WHERE symbol = $1 AND reference = $2",
        ticker.as_str(),
        reference.as_str()
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let state: State = sqlx::query_as!(
        State,
        "UPDATE symbols SET reference_count = reference_count - $2,
                tracked_since = CASE WHEN reference_count - $2 = 0 THEN NULL ELSE tracked_since END
         WHERE symbol = $1 RETURNING symbol, reference_count, tracked_since",
        ticker.as_str(),
        i32::from(removed),
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Some((state, removed)))
}

/// Tracked symbols by ticker after `after`, at most `limit` + 1 (the extra one says another
/// page exists).
pub async fn list(pool: &PgPool, after: &str, limit: u32) -> Result<Vec<State>, sqlx::Error> {
    sqlx::query_as!(
        State,
        "SELECT symbol, reference_count, tracked_since FROM symbols
         WHERE reference_count > 0 AND symbol > $1 ORDER BY symbol LIMIT $2",
        after,
        i64::from(limit) + 1,
    )
    .fetch_all(pool)
    .await
}

/// Every tracked symbol (the live adapter streams these unless told otherwise).
pub async fn tracked_symbols(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!("SELECT symbol FROM symbols WHERE reference_count > 0 ORDER BY symbol")
        .fetch_all(pool)
        .await
}

/// The symbols `reference` holds.
pub async fn held(
    conn: &mut PgConnection,
    reference: &Reference,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT symbol FROM tracking_references WHERE reference = $1",
        reference.as_str()
    )
    .fetch_all(conn)
    .await
}

/// The symbols `reference` holds, by ticker.
pub async fn held_sorted(
    conn: &mut PgConnection,
    reference: &Reference,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT symbol FROM tracking_references WHERE reference = $1 ORDER BY symbol",
        reference.as_str(),
    )
    .fetch_all(conn)
    .await
}
