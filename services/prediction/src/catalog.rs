//! The model catalog as the API shows it: every version with its serving status, card, role
//! and traffic share (registry on disk, records in the database, traffic in memory).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use mirai_proto::stock::v1 as stock;

use crate::artifact::{Card, CardPeriodMetrics, CardSplit};
use crate::context::Context;
use crate::domain::model_ref::ModelRef;
use crate::domain::traffic::Role;
use crate::error::Result;
use crate::forecasting::{duration_to_wire, role_to_wire};
use crate::models::{Status as ServingStatus, VersionInfo};
use crate::store::traffic::TrafficView;
use crate::store::versions;

/// The models with their versions, newest first; one model's with `name`; retired versions
/// only with `include_retired`.
pub async fn models(
    context: &Context,
    name: Option<&str>,
    include_retired: bool,
) -> Result<Vec<pb::Model>> {
    let records = versions::all(&context.pool).await?;
    let traffic = context.predictor.traffic.current();
    let mut by_name: BTreeMap<String, Vec<pb::ModelVersion>> = BTreeMap::new();
    let mut infos = context.predictor.models.list();
    // Newest first: by first-seen time, then version text.
    infos.sort_by(|a, b| {
        let at = |i: &VersionInfo| records.get(&i.model).and_then(|r| r.created_at);
        at(b)
            .cmp(&at(a))
            .then_with(|| b.model.version().cmp(a.model.version()))
    });
    for info in infos {
        if name.is_some_and(|n| n != info.model.name()) {
            continue;
        }
        if info.status == ServingStatus::Retired && !include_retired {
            continue;
        }
        by_name
            .entry(info.model.name().to_owned())
            .or_default()
            .push(version_to_wire(&info, records.get(&info.model), &traffic));
    }
    Ok(by_name
        .into_iter()
        .map(|(name, versions)| pb::Model { name, versions })
        .collect())
}

/// One version as `traffic` sees it, `None` when this replica does not know it.
pub async fn version(
    context: &Context,
    model: &ModelRef,
    traffic: &TrafficView,
) -> Result<Option<pb::ModelVersion>> {
    let Some(info) = context.predictor.models.info(model) else {
        return Ok(None);
    };
    let records = versions::all(&context.pool).await?;
    Ok(Some(version_to_wire(&info, records.get(model), traffic)))
}

pub fn traffic_to_wire(view: &TrafficView) -> pb::Traffic {
    pb::Traffic {
        splits: view
            .traffic
            .splits()
            .iter()
            .map(|s| pb::TrafficSplit {
                model: Some(s.model.to_wire()),
                percent: s.percent,
            })
            .collect(),
        shadows: view
            .traffic
            .shadows()
            .iter()
            .map(ModelRef::to_wire)
            .collect(),
        champion: Some(view.traffic.champion().to_wire()),
        updated_at: Some(wire::timestamp(view.updated_at)),
        updated_by: view.updated_by.clone(),
    }
}

fn version_to_wire(
    info: &VersionInfo,
    record: Option<&versions::Record>,
    traffic: &TrafficView,
) -> pb::ModelVersion {
    let retired = record.and_then(|r| r.retired_at);
    let status = if retired.is_some() {
        pb::ModelStatus::Retired
    } else {
        match info.status {
            ServingStatus::Loading => pb::ModelStatus::Loading,
            ServingStatus::Ready => pb::ModelStatus::Ready,
            ServingStatus::Failed => pb::ModelStatus::Failed,
            ServingStatus::Retired => pb::ModelStatus::Retired,
        }
    };
    let status_reason = match (status, record.and_then(|r| r.retire_reason.clone())) {
        (pb::ModelStatus::Retired, Some(reason)) if !reason.is_empty() => reason,
        _ => info.reason.clone(),
    };
    let role = if status == pb::ModelStatus::Retired {
        Role::Idle
    } else {
        traffic.traffic.role_of(&info.model)
    };
    pb::ModelVersion {
        model: Some(info.model.to_wire()),
        status: status.into(),
        status_reason,
        role: role_to_wire(role).into(),
        traffic_percent: traffic.traffic.percent_of(&info.model),
        sha256: info.served.as_ref().map_or_else(
            || info.registered_sha256.clone(),
            |s| s.verified.sha256.clone(),
        ),
        card: info.served.as_ref().map(|s| card_to_wire(&s.verified.card)),
        created_at: record.and_then(|r| r.created_at).map(wire::timestamp),
        loaded_at: info
            .served
            .as_ref()
            .map(|s| s.loaded_at)
            .or_else(|| record.and_then(|r| r.loaded_at))
            .map(wire::timestamp),
        retired_at: retired.map(wire::timestamp),
    }
}

fn day_start(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn split_period(split: &CardSplit) -> pb::Period {
    pb::Period {
        start: Some(wire::timestamp(day_start(split.target_from))),
        end: split
            .target_to
            .succ_opt()
            .map(|d| wire::timestamp(day_start(d))),
    }
}

/// The card's metrics in the contract's terms: `naive_mae` is the random walk's MAE and
/// `mase` = MAE / naive MAE on the same days (the card's own MASE uses the training split's
/// scale; both are in `raw_json`).
fn card_metrics(m: &CardPeriodMetrics) -> pb::ScoreMetrics {
    pb::ScoreMetrics {
        count: m.n,
        mae: m.mae.model,
        rmse: m.rmse.model,
        naive_mae: m.mae.baseline.random_walk,
        mase: (m.mae.baseline.random_walk > 0.0).then(|| m.mae.model / m.mae.baseline.random_walk),
        hit_rate: m.hit_rate.model,
        always_up_hit_rate: m.hit_rate.always_up,
        pinball_loss: m.pinball.model,
        baseline_pinball_loss: m.pinball.baseline.gaussian_rolling_vol,
        coverage: m.coverage_90.model,
        nominal_coverage: m.coverage_90.nominal,
        information_coefficient: None,
        rank_information_coefficient: None,
    }
}

fn card_to_wire(card: &Card) -> pb::ModelCard {
    pb::ModelCard {
        description: card.description.clone(),
        features: card
            .features
            .iter()
            .map(|f| format!("{}: {}", f.name, f.formula))
            .collect(),
        window: card.window as u32,
        timeframe: stock::Timeframe::OneDay.into(),
        quantiles: card.quantiles.clone(),
        target: card.target.clone(),
        data_sha256: card.data.sha256.clone(),
        train: Some(split_period(&card.splits.train)),
        validation: Some(split_period(&card.splits.validation)),
        test: Some(split_period(&card.splits.test)),
        training_duration: Some(duration_to_wire(std::time::Duration::from_secs_f64(
            card.training.seconds.max(0.0),
        ))),
        test_metrics: Some(card_metrics(&card.metrics.test)),
        test_metrics_by_year: card
            .metrics
            .test_by_year
            .iter()
            .map(|(year, m)| (year.clone(), card_metrics(m)))
            .collect(),
        limitations: card.limitations(),
        raw_json: card.raw.clone(),
    }
}
