//! The traffic configuration in the database, and this replica's copy of it.
//!
//! The row is the source of truth for every replica; writers lock it (`FOR UPDATE`) and bump
//! its revision in the same transaction as the events they emit, and each replica re-reads it
//! when the revision changes (polled every `MIRAI_TRAFFIC_REFRESH`), so a change made through
//! one replica reaches the others within that interval and applies from the next request.

use std::sync::{Arc, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::domain::model_ref::ModelRef;
use crate::domain::traffic::{Split, Traffic};

/// The configuration in force, with its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficView {
    pub traffic: Traffic,
    pub revision: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

#[derive(Serialize, Deserialize)]
struct RefDoc {
    name: String,
    version: String,
}

#[derive(Serialize, Deserialize)]
struct SplitDoc {
    name: String,
    version: String,
    percent: u32,
}

#[derive(Serialize, Deserialize)]
struct Doc {
    splits: Vec<SplitDoc>,
    shadows: Vec<RefDoc>,
    champion: RefDoc,
}

fn to_doc(traffic: &Traffic) -> serde_json::Value {
    let r = |m: &ModelRef| RefDoc {
        name: m.name().to_owned(),
        version: m.version().to_owned(),
    };
    serde_json::to_value(Doc {
        splits: traffic
            .splits()
            .iter()
            .map(|s| SplitDoc {
                name: s.model.name().to_owned(),
                version: s.model.version().to_owned(),
                percent: s.percent,
            })
            .collect(),
        shadows: traffic.shadows().iter().map(r).collect(),
        champion: r(traffic.champion()),
    })
    .unwrap_or_default()
}

fn from_doc(value: serde_json::Value) -> anyhow::Result<Traffic> {
    let doc: Doc = serde_json::from_value(value)?;
    let splits = doc
        .splits
        .into_iter()
        .map(|s| {
            Ok(Split {
                model: ModelRef::parse(&s.name, &s.version)?,
                percent: s.percent,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let shadows = doc
        .shadows
        .into_iter()
        .map(|s| Ok(ModelRef::parse(&s.name, &s.version)?))
        .collect::<anyhow::Result<_>>()?;
    let champion = ModelRef::parse(&doc.champion.name, &doc.champion.version)?;
    Ok(Traffic::new(splits, shadows, champion)?)
}

/// The `traffic` row as read.
struct Row {
    revision: i64,
    config: serde_json::Value,
    updated_at: DateTime<Utc>,
    updated_by: String,
}

fn view_of(row: Row) -> anyhow::Result<TrafficView> {
    Ok(TrafficView {
        traffic: from_doc(row.config)?,
        revision: row.revision,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
    })
}

/// The stored configuration, if any.
pub async fn load(conn: &mut PgConnection) -> anyhow::Result<Option<TrafficView>> {
    let row = sqlx::query_as!(
        Row,
        "SELECT revision, config, updated_at, updated_by FROM traffic"
    )
    .fetch_optional(conn)
    .await?;
    row.map(view_of).transpose()
}

/// The stored configuration, locked for the rest of the transaction.
pub async fn lock(conn: &mut PgConnection) -> anyhow::Result<TrafficView> {
    let row = sqlx::query_as!(
        Row,
        "SELECT revision, config, updated_at, updated_by FROM traffic FOR UPDATE"
    )
    .fetch_one(conn)
    .await?;
    view_of(row)
}

/// Stores `traffic` as the first configuration unless one exists; returns the one in force.
pub async fn seed(pool: &PgPool, traffic: &Traffic) -> anyhow::Result<TrafficView> {
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query!(
        "INSERT INTO traffic (id, revision, config, updated_by) VALUES (1, 1, $1, 'system')
         ON CONFLICT (id) DO NOTHING",
        to_doc(traffic),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        sqlx::query!(
            "INSERT INTO traffic_changes (revision, config, updated_by, reason)
             VALUES (1, $1, 'system', 'initial roles from registry.json')",
            to_doc(traffic),
        )
        .execute(&mut *tx)
        .await?;
    }
    let view = load(&mut tx).await?.expect("just seeded");
    tx.commit().await?;
    Ok(view)
}

/// Replaces the configuration (the row must be locked by [`lock`] in this transaction).
pub async fn save(
    conn: &mut PgConnection,
    traffic: &Traffic,
    actor: &str,
    reason: &str,
) -> anyhow::Result<TrafficView> {
    let row = sqlx::query_as!(
        Row,
        "UPDATE traffic SET revision = revision + 1, config = $1, updated_at = now(), updated_by = $2
         RETURNING revision, config, updated_at, updated_by",
        to_doc(traffic),
        actor,
    )
    .fetch_one(&mut *conn)
    .await?;
    let view = view_of(row)?;
    sqlx::query!(
        "INSERT INTO traffic_changes (revision, config, updated_at, updated_by, reason)
         VALUES ($1, $2, $3, $4, $5)",
        view.revision,
        to_doc(traffic),
        view.updated_at,
        actor,
        reason,
    )
    .execute(&mut *conn)
    .await?;
    Ok(view)
}

/// This replica's copy of the configuration.
pub struct TrafficState {
    current: RwLock<Arc<TrafficView>>,
}

impl TrafficState {
    pub fn new(view: TrafficView) -> Self {
        Self {
            current: RwLock::new(Arc::new(view)),
        }
    }

    pub fn current(&self) -> Arc<TrafficView> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes `view` if it is newer than the one held.
    pub fn offer(&self, view: TrafficView) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if view.revision > current.revision {
            *current = Arc::new(view);
        }
    }

    /// Re-reads the stored configuration.
    pub async fn refresh(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut conn = pool.acquire().await?;
        if let Some(view) = load(&mut conn).await? {
            self.offer(view);
        }
        Ok(())
    }
}
