//! Changes to who serves: the traffic split, promotion and retirement.
//!
//! Each change locks the traffic row, writes the new configuration (and its audit row) and
//! any event in one transaction; after the commit this replica takes the new configuration at
//! once, the others within their refresh interval.

use mirai_platform::events::outbox;
use mirai_proto::events::v1 as ev;
use sqlx::PgConnection;

use crate::context::Context;
use crate::domain::model_ref::ModelRef;
use crate::domain::traffic::Traffic;
use crate::error::{Error, Result};
use crate::store::traffic::{self, TrafficView};
use crate::store::versions;

/// Promotes `model` inside `tx` (the caller checked it is READY). Returns the new
/// configuration and the previous champion (`None` when `model` already was the champion,
/// in which case nothing changes and no event is emitted).
pub async fn promote_in(
    tx: &mut PgConnection,
    model: &ModelRef,
    actor: &str,
    reason: &str,
    retire_previous: bool,
    automatic: bool,
    correlation: Option<String>,
) -> anyhow::Result<(TrafficView, Option<ModelRef>)> {
    let current = traffic::lock(tx).await?;
    let previous = current.traffic.champion().clone();
    if previous == *model {
        return Ok((current, None));
    }
    let promoted = current.traffic.promote(model, retire_previous);
    let view = traffic::save(tx, &promoted, actor, reason).await?;
    if retire_previous {
        versions::retire(tx, &previous, actor, &format!("replaced by {model}")).await?;
    }
    outbox::enqueue(
        tx,
        crate::SERVICE,
        &ev::ModelPromoted {
            model_name: model.name().to_owned(),
            model_version: model.version().to_owned(),
            previous_champion: Some(previous.to_wire()),
            automatic,
            reason: reason.to_owned(),
            actor_user_id: if automatic {
                String::new()
            } else {
                actor.to_owned()
            },
        },
        correlation,
    )
    .await?;
    tracing::info!(message = "Champion promoted.", model = %model, previous = %previous, automatic, %reason);
    Ok((view, Some(previous)))
}

fn ready(context: &Context, model: &ModelRef) -> Result<()> {
    match context.predictor.models.served(model) {
        Some(_) => Ok(()),
        None => match context.predictor.models.info(model) {
            Some(_) => Err(crate::error::not_ready(model)),
            None => Err(Error::NotFound(format!("model version {model} not found"))),
        },
    }
}

pub async fn set_traffic(
    context: &Context,
    traffic: Traffic,
    actor: &str,
    reason: &str,
) -> Result<TrafficView> {
    for model in traffic
        .splits()
        .iter()
        .map(|s| &s.model)
        .chain(traffic.shadows())
    {
        ready(context, model)?;
    }
    let mut tx = context.pool.begin().await?;
    let current = traffic::lock(&mut tx).await.map_err(internal)?;
    if current.traffic.champion() != traffic.champion() {
        return Err(Error::FailedPrecondition(format!(
            "the champion is {}; use Promote to change it",
            current.traffic.champion()
        )));
    }
    let view = traffic::save(&mut tx, &traffic, actor, reason)
        .await
        .map_err(internal)?;
    tx.commit().await?;
    context.predictor.traffic.offer(view.clone());
    tracing::info!(
        message = "Traffic changed.",
        revision = view.revision,
        actor
    );
    Ok(view)
}

pub async fn promote(
    context: &Context,
    model: &ModelRef,
    actor: &str,
    reason: &str,
    retire_previous: bool,
) -> Result<(TrafficView, Option<ModelRef>)> {
    ready(context, model)?;
    let mut tx = context.pool.begin().await?;
    let (view, previous) = promote_in(&mut tx, model, actor, reason, retire_previous, false, None)
        .await
        .map_err(internal)?;
    tx.commit().await?;
    context.predictor.traffic.offer(view.clone());
    if retire_previous && let Some(previous) = &previous {
        context
            .predictor
            .models
            .retire(previous, &format!("replaced by {model}"));
    }
    Ok((view, previous))
}

pub async fn retire(
    context: &Context,
    model: &ModelRef,
    actor: &str,
    reason: &str,
) -> Result<TrafficView> {
    if context.predictor.models.info(model).is_none() {
        return Err(Error::NotFound(format!("model version {model} not found")));
    }
    let mut tx = context.pool.begin().await?;
    let current = traffic::lock(&mut tx).await.map_err(internal)?;
    let retired = current.traffic.retire(model)?;
    let view = if retired == current.traffic {
        current
    } else {
        traffic::save(&mut tx, &retired, actor, reason)
            .await
            .map_err(internal)?
    };
    versions::retire(&mut tx, model, actor, reason).await?;
    tx.commit().await?;
    context.predictor.traffic.offer(view.clone());
    context.predictor.models.retire(model, reason);
    tracing::info!(message = "Model version retired.", model = %model, actor, reason);
    Ok(view)
}

fn internal(error: anyhow::Error) -> Error {
    match error.downcast::<sqlx::Error>() {
        Ok(db) => Error::Database(db),
        Err(other) => Error::Internal(format!("{other:#}")),
    }
}
