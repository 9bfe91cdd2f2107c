//! The persistent part of the registry (first seen, last ready, retired) and model health.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::domain::model_ref::ModelRef;

/// What the database remembers about a version.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub created_at: Option<DateTime<Utc>>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
    pub retire_reason: Option<String>,
}

pub async fn register(pool: &PgPool, model: &ModelRef, sha256: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO model_versions (model_name, model_version, sha256) VALUES ($1, $2, $3)
         ON CONFLICT (model_name, model_version) DO UPDATE SET sha256 = EXCLUDED.sha256",
        model.name(),
        model.version(),
        sha256,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn mark_loaded(pool: &PgPool, model: &ModelRef, sha256: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO model_versions (model_name, model_version, sha256, loaded_at)
         VALUES ($1, $2, $3, now())
         ON CONFLICT (model_name, model_version) DO UPDATE
            SET loaded_at = now(), sha256 = EXCLUDED.sha256",
        model.name(),
        model.version(),
        sha256,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Marks a version retired (idempotent: the first retirement's time and reason stay).
pub async fn retire(
    conn: &mut PgConnection,
    model: &ModelRef,
    actor: &str,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO model_versions (model_name, model_version, sha256, retired_at, retired_by,
                                     retire_reason)
         VALUES ($1, $2, '', now(), $3, $4)
         ON CONFLICT (model_name, model_version) DO UPDATE
            SET retired_at = COALESCE(model_versions.retired_at, now()),
                retired_by = COALESCE(model_versions.retired_by, EXCLUDED.retired_by),
                retire_reason = COALESCE(model_versions.retire_reason, EXCLUDED.retire_reason)",
        model.name(),
        model.version(),
        actor,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn all(pool: &PgPool) -> Result<HashMap<ModelRef, Record>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT model_name, model_version, created_at, loaded_at, retired_at, retire_reason
         FROM model_versions",
    )
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::new();
    for row in rows {
        if let Ok(model) = ModelRef::parse(&row.model_name, &row.model_version) {
            out.insert(
                model,
                Record {
                    created_at: Some(row.created_at),
                    loaded_at: row.loaded_at,
                    retired_at: row.retired_at,
                    retire_reason: row.retire_reason,
                },
            );
        }
    }
    Ok(out)
}

/// A version's degradation state and promotion proposal.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub degraded: bool,
    pub proposed: bool,
}

pub async fn health(conn: &mut PgConnection, model: &ModelRef) -> Result<Health, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT degraded, proposed_at IS NOT NULL AS "proposed!" FROM model_health
         WHERE model_name = $1 AND model_version = $2 FOR UPDATE"#,
        model.name(),
        model.version(),
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(row) => Health {
            degraded: row.degraded,
            proposed: row.proposed,
        },
        None => Health::default(),
    })
}

pub async fn set_degraded(
    conn: &mut PgConnection,
    model: &ModelRef,
    degraded: bool,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO model_health (model_name, model_version, degraded, degraded_since, reason)
         VALUES ($1, $2, $3, CASE WHEN $3 THEN now() END, $4)
         ON CONFLICT (model_name, model_version) DO UPDATE
            SET degraded = $3,
                degraded_since = CASE WHEN $3 THEN COALESCE(model_health.degraded_since, now()) END,
                reason = $4, updated_at = now()",
        model.name(),
        model.version(),
        degraded,
        reason,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_proposal(
    conn: &mut PgConnection,
    model: &ModelRef,
    proposal: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO model_health (model_name, model_version, proposed_at, proposal)
         VALUES ($1, $2, CASE WHEN $3::text IS NOT NULL THEN now() END, COALESCE($3, ''))
         ON CONFLICT (model_name, model_version) DO UPDATE
            SET proposed_at = CASE WHEN $3::text IS NOT NULL
                                   THEN COALESCE(model_health.proposed_at, now()) END,
                proposal = COALESCE($3, ''), updated_at = now()",
        model.name(),
        model.version(),
        proposal,
    )
    .execute(conn)
    .await?;
    Ok(())
}
