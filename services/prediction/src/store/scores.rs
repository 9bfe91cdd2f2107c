//! Scored forecasts (one per version, symbol and origin bar) and the windows scoreboards read.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row as _};

use crate::domain::model_ref::ModelRef;
use crate::domain::scoring::{Outcome, Scored};

/// A score to insert.
pub struct NewScore<'a> {
    pub model: &'a ModelRef,
    pub symbol: &'a str,
    pub as_of: DateTime<Utc>,
    pub target_start: DateTime<Utc>,
    pub median: f64,
    pub outcome: &'a Outcome,
    pub nominal_coverage: f64,
}

/// Inserts a score; `false` when this version was already scored for that bar.
pub async fn insert(conn: &mut PgConnection, score: &NewScore<'_>) -> Result<bool, sqlx::Error> {
    let o = score.outcome;
    let inserted = sqlx::query!(
        "INSERT INTO scores (model_name, model_version, symbol, as_of, target_start, median, y,
            abs_error, naive_abs_error, pinball, baseline_pinball, inside, hit, nominal_coverage)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT DO NOTHING",
        score.model.name(),
        score.model.version(),
        score.symbol,
        score.as_of,
        score.target_start,
        score.median,
        o.y,
        o.abs_error,
        o.naive_abs_error,
        o.pinball,
        o.baseline_pinball,
        o.inside,
        o.direction_hit,
        score.nominal_coverage,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Which scores a scoreboard covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last N by target bar.
    Last(u32),
    /// Target bars starting in [start, end).
    Period {
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    },
}

/// The scores of a window, newest first, and when the newest was scored.
pub struct Loaded {
    pub scored: Vec<Scored>,
    pub nominal_coverage: Option<f64>,
    pub last_scored_at: Option<DateTime<Utc>>,
    /// Target-bar range covered.
    pub first_target: Option<DateTime<Utc>>,
    pub last_target: Option<DateTime<Utc>>,
}

pub async fn load(
    conn: &mut PgConnection,
    model: &ModelRef,
    window: Window,
    symbol: Option<&str>,
) -> Result<Loaded, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT symbol, target_start, median, y, abs_error, naive_abs_error, pinball,
                baseline_pinball, inside, hit, nominal_coverage, scored_at
         FROM scores WHERE model_name = ",
    );
    q.push_bind(model.name().to_owned());
    q.push(" AND model_version = ")
        .push_bind(model.version().to_owned());
    if let Some(symbol) = symbol {
        q.push(" AND symbol = ").push_bind(symbol.to_owned());
    }
    match window {
        Window::Last(n) => {
            q.push(" ORDER BY target_start DESC, symbol LIMIT ")
                .push_bind(i64::from(n));
        }
        Window::Period { start, end } => {
            if let Some(start) = start {
                q.push(" AND target_start >= ").push_bind(start);
            }
            if let Some(end) = end {
                q.push(" AND target_start < ").push_bind(end);
            }
            q.push(" ORDER BY target_start DESC, symbol");
        }
    }
    let rows = q.build().fetch_all(conn).await?;
    let mut loaded = Loaded {
        scored: Vec::with_capacity(rows.len()),
        nominal_coverage: None,
        last_scored_at: None,
        first_target: None,
        last_target: None,
    };
    for row in rows {
        let target_start: DateTime<Utc> = row.try_get("target_start")?;
        let scored_at: DateTime<Utc> = row.try_get("scored_at")?;
        loaded.nominal_coverage = Some(row.try_get("nominal_coverage")?);
        loaded.last_scored_at = loaded.last_scored_at.max(Some(scored_at));
        loaded.last_target = loaded.last_target.max(Some(target_start));
        loaded.first_target = Some(
            loaded
                .first_target
                .map_or(target_start, |f| f.min(target_start)),
        );
        loaded.scored.push(Scored {
            symbol: row.try_get("symbol")?,
            target_start,
            median: row.try_get("median")?,
            outcome: Outcome {
                y: row.try_get("y")?,
                abs_error: row.try_get("abs_error")?,
                naive_abs_error: row.try_get("naive_abs_error")?,
                pinball: row.try_get("pinball")?,
                baseline_pinball: row.try_get("baseline_pinball")?,
                inside: row.try_get("inside")?,
                direction_hit: row.try_get("hit")?,
            },
        });
    }
    Ok(loaded)
}

/// Daily pinball-loss differences `challenger − champion` over the challenger's scores in
/// `window` (optionally one symbol) that the champion also has (paired by symbol and origin
/// bar). For `Window::Last(n)`, the newest `n` pairs.
pub async fn paired_pinball_differences(
    conn: &mut PgConnection,
    challenger: &ModelRef,
    champion: &ModelRef,
    window: Window,
    symbol: Option<&str>,
) -> Result<Vec<f64>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT c.pinball - ch.pinball FROM scores c
         JOIN scores ch ON ch.symbol = c.symbol AND ch.as_of = c.as_of AND ch.model_name = ",
    );
    q.push_bind(champion.name().to_owned());
    q.push(" AND ch.model_version = ")
        .push_bind(champion.version().to_owned());
    q.push(" WHERE c.model_name = ")
        .push_bind(challenger.name().to_owned());
    q.push(" AND c.model_version = ")
        .push_bind(challenger.version().to_owned());
    if let Some(symbol) = symbol {
        q.push(" AND c.symbol = ").push_bind(symbol.to_owned());
    }
    match window {
        Window::Last(n) => {
            q.push(" ORDER BY c.target_start DESC, c.symbol LIMIT ")
                .push_bind(i64::from(n));
        }
        Window::Period { start, end } => {
            if let Some(start) = start {
                q.push(" AND c.target_start >= ").push_bind(start);
            }
            if let Some(end) = end {
                q.push(" AND c.target_start < ").push_bind(end);
            }
        }
    }
    q.build_query_scalar().fetch_all(conn).await
}
