//! The model registry: models, their versions and cards, with their accuracy metrics.

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_proto::prediction::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::{Path, Problem, Query};
use crate::routes::fields::time;
use crate::routes::shapes::ModelRef;
use crate::routes::state::AppState;

use super::{ModelRole, ModelStatus, millis};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .routes(routes!(get_version))
}

// === Registry ===

/// Accuracy of a set of matured predictions (errors on the next-bar log return).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreMetrics {
    pub count: u64,
    pub mae: f64,
    pub rmse: f64,
    /// MAE of the random walk ("next close = last close") on the same predictions.
    pub naive_mae: f64,
    /// mae / naive_mae: below 1 beats the random walk.
    pub mase: Option<f64>,
    pub hit_rate: f64,
    pub always_up_hit_rate: f64,
    pub pinball_loss: f64,
    /// The 20-day rolling-volatility Gaussian's pinball loss on the same predictions.
    pub baseline_pinball_loss: f64,
    pub coverage: f64,
    pub nominal_coverage: f64,
    pub information_coefficient: Option<f64>,
    pub rank_information_coefficient: Option<f64>,
}

impl From<pb::ScoreMetrics> for ScoreMetrics {
    fn from(m: pb::ScoreMetrics) -> Self {
        Self {
            count: m.count,
            mae: m.mae,
            rmse: m.rmse,
            naive_mae: m.naive_mae,
            mase: m.mase,
            hit_rate: m.hit_rate,
            always_up_hit_rate: m.always_up_hit_rate,
            pinball_loss: m.pinball_loss,
            baseline_pinball_loss: m.baseline_pinball_loss,
            coverage: m.coverage,
            nominal_coverage: m.nominal_coverage,
            information_coefficient: m.information_coefficient,
            rank_information_coefficient: m.rank_information_coefficient,
        }
    }
}

/// A date range (start inclusive, end exclusive).
#[derive(Debug, Serialize, ToSchema)]
pub struct Period {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

pub(super) fn period(p: Option<pb::Period>) -> Option<Period> {
    p.map(|p| Period {
        start: time(&p.start),
        end: time(&p.end),
    })
}

/// The model card written by the training pipeline.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCard {
    pub description: String,
    /// `name: formula`, in input order.
    pub features: Vec<String>,
    pub window: u32,
    pub quantiles: Vec<f64>,
    pub target: String,
    pub data_sha256: String,
    pub train: Option<Period>,
    pub validation: Option<Period>,
    pub test: Option<Period>,
    pub training_seconds: f64,
    pub test_metrics: Option<ScoreMetrics>,
    pub test_metrics_by_year: std::collections::BTreeMap<String, ScoreMetrics>,
    /// Where the model does not beat a baseline.
    pub limitations: Vec<String>,
}

impl From<pb::ModelCard> for ModelCard {
    fn from(c: pb::ModelCard) -> Self {
        Self {
            training_seconds: millis(&c.training_duration) / 1e3,
            train: period(c.train),
            validation: period(c.validation),
            test: period(c.test),
            test_metrics: c.test_metrics.map(ScoreMetrics::from),
            test_metrics_by_year: c
                .test_metrics_by_year
                .into_iter()
                .map(|(y, m)| (y, ScoreMetrics::from(m)))
                .collect(),
            description: c.description,
            features: c.features,
            window: c.window,
            quantiles: c.quantiles,
            target: c.target,
            data_sha256: c.data_sha256,
            limitations: c.limitations,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelVersion {
    pub model: Option<ModelRef>,
    pub status: Option<ModelStatus>,
    /// Why FAILED or RETIRED, or a refused reload while the verified artifact keeps serving.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status_reason: String,
    pub role: Option<ModelRole>,
    /// Share of requests, 0–100.
    pub traffic_percent: u32,
    /// sha256 of the ONNX artifact served.
    pub sha256: String,
    pub card: Option<ModelCard>,
    pub created_at: Option<DateTime<Utc>>,
    pub loaded_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl From<pb::ModelVersion> for ModelVersion {
    fn from(v: pb::ModelVersion) -> Self {
        Self {
            status: ModelStatus::from_wire(v.status),
            role: ModelRole::from_wire(v.role),
            created_at: time(&v.created_at),
            loaded_at: time(&v.loaded_at),
            retired_at: time(&v.retired_at),
            model: v.model.map(ModelRef::from),
            card: v.card.map(ModelCard::from),
            status_reason: v.status_reason,
            traffic_percent: v.traffic_percent,
            sha256: v.sha256,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Model {
    pub name: String,
    /// Newest first.
    pub versions: Vec<ModelVersion>,
}

impl From<pb::Model> for Model {
    fn from(m: pb::Model) -> Self {
        Self {
            name: m.name,
            versions: m.versions.into_iter().map(ModelVersion::from).collect(),
        }
    }
}

/// Query of the model listings.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModelsQuery {
    /// Include retired versions.
    #[serde(default)]
    pub include_retired: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<Model>,
}

/// Models with their versions, serving state and cards.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    params(ModelsQuery),
    responses((status = 200, description = "Models", body = ModelList)))]
async fn list_models(
    State(state): State<AppState>,
    Query(query): Query<ModelsQuery>,
) -> Result<axum::Json<ModelList>, Problem> {
    let response = state
        .upstreams
        .prediction()
        .list_models(pb::ListModelsRequest {
            include_retired: query.include_retired,
        })
        .await?
        .into_inner();
    Ok(axum::Json(ModelList {
        models: response.models.into_iter().map(Model::from).collect(),
    }))
}

/// One model with its versions.
#[utoipa::path(get, path = "/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ModelsQuery),
    responses(
        (status = 200, description = "The model", body = Model),
        (status = 404, description = "Unknown model", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_model(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<ModelsQuery>,
) -> Result<axum::Json<Model>, Problem> {
    let response = state
        .upstreams
        .prediction()
        .get_model(pb::GetModelRequest {
            name,
            include_retired: query.include_retired,
        })
        .await?
        .into_inner();
    Ok(axum::Json(
        response
            .model
            .ok_or_else(|| Problem::missing("a model"))?
            .into(),
    ))
}

/// One version with its card.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version label")),
    responses(
        (status = 200, description = "The version", body = ModelVersion),
        (status = 404, description = "Unknown version", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<ModelVersion>, Problem> {
    let response = state
        .upstreams
        .prediction()
        .get_model_version(pb::GetModelVersionRequest {
            model: Some(pb::ModelRef { name, version }),
        })
        .await?
        .into_inner();
    Ok(axum::Json(
        response
            .version
            .ok_or_else(|| Problem::missing("a version"))?
            .into(),
    ))
}
