//! (Admin) the traffic split and shadow set, promotion and retirement of versions.

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_proto::prediction::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Admin, forward};
use crate::problem::{Json, Path, Problem};
use crate::routes::fields::time;
use crate::routes::shapes::ModelRef;
use crate::routes::state::AppState;

use super::models::ModelVersion;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_traffic, set_traffic))
        .routes(routes!(promote))
        .routes(routes!(retire))
}

// === Traffic (admin) ===

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficSplit {
    pub model: ModelRef,
    /// Percent of requests; the splits sum to 100.
    pub percent: u32,
}

/// The traffic configuration.
#[derive(Debug, Serialize, ToSchema)]
pub struct Traffic {
    pub splits: Vec<TrafficSplit>,
    pub shadows: Vec<ModelRef>,
    pub champion: Option<ModelRef>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: String,
}

impl From<pb::Traffic> for Traffic {
    fn from(t: pb::Traffic) -> Self {
        Self {
            splits: t
                .splits
                .into_iter()
                .filter_map(|s| {
                    Some(TrafficSplit {
                        model: s.model?.into(),
                        percent: s.percent,
                    })
                })
                .collect(),
            shadows: t.shadows.into_iter().map(ModelRef::from).collect(),
            champion: t.champion.map(ModelRef::from),
            updated_at: time(&t.updated_at),
            updated_by: t.updated_by,
        }
    }
}

/// The current traffic split and shadow set.
#[utoipa::path(get, path = "/v1/admin/models/traffic", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The traffic configuration", body = Traffic),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_traffic(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> Result<axum::Json<Traffic>, Problem> {
    let request = forward(pb::GetTrafficRequest {}, &admin)?;
    let response = state
        .upstreams
        .prediction()
        .get_traffic(request)
        .await?
        .into_inner();
    Ok(axum::Json(
        response
            .traffic
            .ok_or_else(|| Problem::missing("traffic"))?
            .into(),
    ))
}

/// Body of `PUT /v1/admin/models/traffic`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficChange {
    /// Weighted split over the champion and challengers; percents sum to 100.
    pub splits: Vec<TrafficSplit>,
    /// Versions mirrored off the request path; disjoint from the splits.
    #[serde(default)]
    pub shadows: Vec<ModelRef>,
    /// The current champion (use promote to change it).
    pub champion: ModelRef,
    #[serde(default)]
    pub reason: String,
}

/// Replaces the traffic split and the shadow set; every named version must be ready.
#[utoipa::path(put, path = "/v1/admin/models/traffic", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    request_body = TrafficChange,
    responses(
        (status = 200, description = "The configuration now in force", body = Traffic),
        (status = 400, description = "Percents not summing to 100, a version both serving and shadowing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A version is not ready, or the champion differs", body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_traffic(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(body): Json<TrafficChange>,
) -> Result<axum::Json<Traffic>, Problem> {
    let request = forward(
        pb::SetTrafficRequest {
            traffic: Some(pb::Traffic {
                splits: body
                    .splits
                    .into_iter()
                    .map(|s| pb::TrafficSplit {
                        model: Some(s.model.into()),
                        percent: s.percent,
                    })
                    .collect(),
                shadows: body.shadows.into_iter().map(pb::ModelRef::from).collect(),
                champion: Some(body.champion.into()),
                updated_at: None,
                updated_by: String::new(),
            }),
            actor_user_id: admin.user_id.clone(),
            reason: body.reason,
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .prediction()
        .set_traffic(request)
        .await?
        .into_inner();
    Ok(axum::Json(
        response
            .traffic
            .ok_or_else(|| Problem::missing("traffic"))?
            .into(),
    ))
}

/// Body of the promote and retire routes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminAction {
    #[serde(default)]
    pub reason: String,
    /// Promote only: also retire the previous champion.
    #[serde(default)]
    pub retire_previous: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Promotion {
    pub champion: Option<ModelVersion>,
    /// Unset when the version already was the champion.
    pub previous_champion: Option<ModelRef>,
    pub traffic: Option<Traffic>,
}

/// Makes a ready version the champion; it takes over the previous champion's weight.
/// Idempotent for the current champion. Emits `model.promoted`.
#[utoipa::path(post, path = "/v1/admin/models/{name}/versions/{version}/promote", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version label")),
    request_body = AdminAction,
    responses(
        (status = 200, description = "The new champion", body = Promotion),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not ready", body = Problem, content_type = "application/problem+json"),
    ))]
async fn promote(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((name, version)): Path<(String, String)>,
    Json(body): Json<AdminAction>,
) -> Result<axum::Json<Promotion>, Problem> {
    let request = forward(
        pb::PromoteRequest {
            model: Some(pb::ModelRef { name, version }),
            actor_user_id: admin.user_id.clone(),
            reason: body.reason,
            retire_previous: body.retire_previous,
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .prediction()
        .promote(request)
        .await?
        .into_inner();
    Ok(axum::Json(Promotion {
        champion: response.champion.map(ModelVersion::from),
        previous_champion: response.previous_champion.map(ModelRef::from),
        traffic: response.traffic.map(Traffic::from),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retirement {
    pub version: Option<ModelVersion>,
    pub traffic: Option<Traffic>,
}

/// Stops serving a version for good (its weight goes to the champion). The champion cannot be
/// retired. Idempotent.
#[utoipa::path(post, path = "/v1/admin/models/{name}/versions/{version}/retire", tag = "admin",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version label")),
    request_body = AdminAction,
    responses(
        (status = 200, description = "The version, retired", body = Retirement),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown version", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is the champion", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retire(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((name, version)): Path<(String, String)>,
    Json(body): Json<AdminAction>,
) -> Result<axum::Json<Retirement>, Problem> {
    let request = forward(
        pb::RetireRequest {
            model: Some(pb::ModelRef { name, version }),
            actor_user_id: admin.user_id.clone(),
            reason: body.reason,
        },
        &admin,
    )?;
    let response = state
        .upstreams
        .prediction()
        .retire(request)
        .await?
        .into_inner();
    Ok(axum::Json(Retirement {
        version: response.version.map(ModelVersion::from),
        traffic: response.traffic.map(Traffic::from),
    }))
}
