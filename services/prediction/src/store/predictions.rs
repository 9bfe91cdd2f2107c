//! Stored predictions: writing them (in the bar loop's transaction, or in batches from the
//! request path through [`PredictionLog`]), listing them, maturing them, purging a user's, and
//! retention.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::model_ref::ModelRef;
use crate::domain::traffic::Role;
use crate::forecasting::Made;

/// Why a prediction was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Predict / PredictMany.
    Request,
    /// Mirrored to a shadow version.
    Shadow,
    /// The bar loop, on `stock.bar.closed`.
    Event,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Shadow => "shadow",
            Self::Event => "event",
        }
    }
}

pub fn role_code(role: Role) -> i16 {
    use mirai_proto::prediction::v1::ModelRole;
    (match role {
        Role::Champion => ModelRole::Champion,
        Role::Challenger => ModelRole::Challenger,
        Role::Shadow => ModelRole::Shadow,
        Role::Idle => ModelRole::Idle,
    }) as i16
}

/// A prediction to store.
#[derive(Debug, Clone)]
pub struct Stored {
    pub made: Made,
    pub origin: Origin,
    /// Returned to a caller.
    pub served: bool,
    pub user_id: Option<Uuid>,
}

/// Inserts `rows` in one statement.
pub async fn insert(conn: &mut PgConnection, rows: &[Stored]) -> Result<(), sqlx::Error> {
    // 23 parameters per row: well below PostgreSQL's 65,535 per statement for the batches used.
    for chunk in rows.chunks(1000) {
        let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO predictions (id, model_name, model_version, role, origin, served, user_id,
                symbol, timeframe, adjustment, as_of, target_start, last_close, levels, log_returns,
                lower_level, upper_level, point, lower, upper, p_up, latency_us, created_at) ",
        );
        query.push_values(chunk, |mut b, row| {
            let m = &row.made;
            b.push_bind(m.id)
                .push_bind(m.model.name().to_owned())
                .push_bind(m.model.version().to_owned())
                .push_bind(role_code(m.role))
                .push_bind(row.origin.as_str())
                .push_bind(row.served)
                .push_bind(row.user_id)
                .push_bind(m.symbol.as_str().to_owned())
                .push_bind(m.timeframe as i16)
                .push_bind(m.adjustment as i16)
                .push_bind(m.as_of)
                .push_bind(m.target_start)
                .push_bind(m.last_close)
                .push_bind(m.levels.to_vec())
                .push_bind(m.log_returns.clone())
                .push_bind(m.lower_level)
                .push_bind(m.upper_level)
                .push_bind(m.prices.point)
                .push_bind(m.prices.lower)
                .push_bind(m.prices.upper)
                .push_bind(m.prices.p_up)
                .push_bind(i64::try_from(m.latency.as_micros()).unwrap_or(i64::MAX))
                .push_bind(m.created_at);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes request-path predictions off the request path, in batches: a caller hands a row
/// over (waiting only if the bounded queue is full, which pushes back instead of dropping) and
/// a background task inserts whatever has accumulated in one statement. A crash loses at most
/// the rows queued in the last moments; shutdown drains the queue first.
#[derive(Clone)]
pub struct PredictionLog {
    sender: mpsc::Sender<Stored>,
}

/// The receiving end, run by [`PredictionLog::run`].
pub struct LogWriter {
    receiver: mpsc::Receiver<Stored>,
    pool: PgPool,
}

impl PredictionLog {
    pub fn new(pool: PgPool, capacity: usize) -> (Self, LogWriter) {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        (Self { sender }, LogWriter { receiver, pool })
    }

    pub async fn record(&self, rows: Vec<Stored>) {
        for row in rows {
            if self.sender.send(row).await.is_err() {
                tracing::warn!(message = "Prediction log closed; a prediction was not stored.");
                return;
            }
        }
    }
}

impl LogWriter {
    /// Inserts batches until `shutdown`, then drains what is still queued (new rows keep being
    /// taken while they arrive within half a second, i.e. while in-flight calls finish).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(512);
        loop {
            let received = tokio::select! {
                n = self.receiver.recv_many(&mut batch, 512) => n,
                () = shutdown.cancelled() => break,
            };
            if received == 0 {
                return;
            }
            self.flush(&mut batch).await;
        }
        loop {
            match tokio::time::timeout(
                Duration::from_millis(500),
                self.receiver.recv_many(&mut batch, 512),
            )
            .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => self.flush(&mut batch).await,
            }
        }
        tracing::debug!(message = "Prediction log drained.");
    }

    async fn flush(&mut self, batch: &mut Vec<Stored>) {
        let mut attempt = 0;
        loop {
            let result = async {
                let mut conn = self.pool.acquire().await?;
                insert(&mut conn, batch).await
            }
            .await;
            match result {
                Ok(()) => break,
                Err(error) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(message = "Storing predictions failed; retrying.", %error, rows = batch.len(), attempt);
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(error) => {
                    tracing::error!(message = "Storing predictions failed; rows dropped.", %error, rows = batch.len());
                    break;
                }
            }
        }
        batch.clear();
    }
}

/// A pending prediction of one origin bar, to be scored.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub model: ModelRef,
    pub origin: String,
    pub levels: Vec<f64>,
    pub log_returns: Vec<f64>,
    pub lower_level: f64,
    pub upper_level: f64,
    pub last_close: f64,
}

/// The unscored predictions of `symbol` made at `as_of`, locked.
pub async fn pending_at(
    conn: &mut PgConnection,
    symbol: &str,
    as_of: DateTime<Utc>,
) -> Result<Vec<Pending>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT id, model_name, model_version, origin, levels, log_returns, lower_level, upper_level,
                last_close
         FROM predictions
         WHERE symbol = $1 AND as_of = $2 AND scored_at IS NULL AND expired_at IS NULL
         ORDER BY id FOR UPDATE",
        symbol,
        as_of,
    )
    .fetch_all(conn)
    .await?;
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(model) = ModelRef::parse(&row.model_name, &row.model_version) else {
            continue;
        };
        pending.push(Pending {
            id: row.id,
            model,
            origin: row.origin,
            levels: row.levels,
            log_returns: row.log_returns,
            lower_level: row.lower_level,
            upper_level: row.upper_level,
            last_close: row.last_close,
        });
    }
    Ok(pending)
}

/// An outcome to write onto a stored prediction.
pub struct Scoring {
    pub id: Uuid,
    pub actual_close: f64,
    pub abs_error: f64,
    pub naive_abs_error: f64,
    pub pinball_loss: f64,
    pub inside_interval: bool,
    pub direction_hit: bool,
}

pub async fn mark_scored(conn: &mut PgConnection, scored: &[Scoring]) -> Result<(), sqlx::Error> {
    if scored.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "UPDATE predictions p SET scored_at = now(), actual_close = s.actual_close,
            abs_error = s.abs_error, naive_abs_error = s.naive_abs_error,
            pinball_loss = s.pinball_loss, inside_interval = s.inside, direction_hit = s.hit
         FROM UNNEST($1::uuid[], $2::float8[], $3::float8[], $4::float8[], $5::float8[],
                     $6::bool[], $7::bool[])
              AS s(id, actual_close, abs_error, naive_abs_error, pinball_loss, inside, hit)
         WHERE p.id = s.id",
        &scored.iter().map(|s| s.id).collect::<Vec<_>>(),
        &scored.iter().map(|s| s.actual_close).collect::<Vec<_>>(),
        &scored.iter().map(|s| s.abs_error).collect::<Vec<_>>(),
        &scored.iter().map(|s| s.naive_abs_error).collect::<Vec<_>>(),
        &scored.iter().map(|s| s.pinball_loss).collect::<Vec<_>>(),
        &scored.iter().map(|s| s.inside_interval).collect::<Vec<_>>(),
        &scored.iter().map(|s| s.direction_hit).collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Pending predictions of `symbol` from before `as_of` whose next bar was missed (a later bar
/// arrived first): they never mature, so they stop counting as pending.
pub async fn expire_before(
    conn: &mut PgConnection,
    symbol: &str,
    as_of: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query!(
        "UPDATE predictions SET expired_at = now()
         WHERE symbol = $1 AND as_of < $2 AND scored_at IS NULL AND expired_at IS NULL",
        symbol,
        as_of,
    )
    .execute(conn)
    .await?
    .rows_affected())
}

/// Deletes every prediction served to `user_id` (the deletion saga's purge).
pub async fn purge_user(conn: &mut PgConnection, user_id: Uuid) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query!("DELETE FROM predictions WHERE user_id = $1", user_id)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

/// Deletes predictions older than `retention`, in slices so no statement runs long.
pub async fn apply_retention(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let deleted = sqlx::query!(
            "DELETE FROM predictions WHERE id IN (
                 SELECT id FROM predictions
                 WHERE created_at < now() - make_interval(secs => $1) LIMIT 10000)",
            retention.as_secs_f64(),
        )
        .execute(pool)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < 10000 {
            return Ok(total);
        }
    }
}

/// Pending event-loop predictions of a version (optionally one symbol).
pub async fn count_pending(
    pool: &PgPool,
    model: &ModelRef,
    symbol: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let count: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM predictions
         WHERE model_name = $1 AND model_version = $2 AND origin = 'event'
           AND scored_at IS NULL AND expired_at IS NULL AND ($3::text IS NULL OR symbol = $3)"#,
        model.name(),
        model.version(),
        symbol,
    )
    .fetch_one(pool)
    .await?;
    Ok(count.max(0) as u64)
}

/// A stored prediction as listed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub model_name: String,
    pub model_version: String,
    pub role: i16,
    pub origin: String,
    pub served: bool,
    pub user_id: Option<Uuid>,
    pub symbol: String,
    pub timeframe: i16,
    pub adjustment: i16,
    pub as_of: DateTime<Utc>,
    pub target_start: DateTime<Utc>,
    pub last_close: f64,
    pub levels: Vec<f64>,
    pub log_returns: Vec<f64>,
    pub lower_level: f64,
    pub upper_level: f64,
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub p_up: f64,
    pub latency_us: i64,
    pub created_at: DateTime<Utc>,
    pub scored_at: Option<DateTime<Utc>>,
    pub actual_close: Option<f64>,
    pub abs_error: Option<f64>,
    pub naive_abs_error: Option<f64>,
    pub pinball_loss: Option<f64>,
    pub inside_interval: Option<bool>,
    pub direction_hit: Option<bool>,
}

/// Filters of a history listing.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub symbol: Option<String>,
    pub model: Option<ModelRef>,
    /// `Some(None)`: only predictions without a user; `Some(Some(id))`: that user's; `None`: all.
    pub user: Option<Option<Uuid>>,
    pub include_shadow: bool,
    /// `Some(true)` matured only, `Some(false)` pending only.
    pub matured: Option<bool>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Keyset: ids below this one (newest first).
    pub before: Option<Uuid>,
}

/// Up to `limit` predictions matching `filter`, newest first.
pub async fn list(pool: &PgPool, filter: &Filter, limit: u32) -> Result<Vec<Listed>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT id, model_name, model_version, role, origin, served, user_id, symbol, timeframe,
                adjustment, as_of, target_start, last_close, levels, log_returns, lower_level,
                upper_level, point, lower, upper, p_up, latency_us, created_at, scored_at,
                actual_close, abs_error, naive_abs_error, pinball_loss, inside_interval,
                direction_hit
         FROM predictions WHERE true",
    );
    if let Some(symbol) = &filter.symbol {
        q.push(" AND symbol = ").push_bind(symbol.clone());
    }
    if let Some(model) = &filter.model {
        q.push(" AND model_name = ")
            .push_bind(model.name().to_owned());
        q.push(" AND model_version = ")
            .push_bind(model.version().to_owned());
    }
    match filter.user {
        Some(Some(user)) => {
            q.push(" AND user_id = ").push_bind(user);
        }
        Some(None) => {
            q.push(" AND user_id IS NULL");
        }
        None => {}
    }
    if !filter.include_shadow {
        q.push(" AND origin <> 'shadow'");
    }
    match filter.matured {
        Some(true) => {
            q.push(" AND scored_at IS NOT NULL");
        }
        Some(false) => {
            q.push(" AND scored_at IS NULL AND expired_at IS NULL");
        }
        None => {}
    }
    if let Some(since) = filter.since {
        q.push(" AND created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND created_at < ").push_bind(until);
    }
    if let Some(before) = filter.before {
        q.push(" AND id < ").push_bind(before);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit));
    q.build_query_as::<Listed>().fetch_all(pool).await
}
