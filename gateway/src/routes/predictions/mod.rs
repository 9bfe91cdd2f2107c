//! The prediction service's routes, `/v1/predictions` and `/v1/models`: `forecasts` (a
//! symbol's forecast, batches, and the stored predictions with their outcomes), `models` (the
//! registry: models, versions, cards), `scoreboards` (live accuracy against the champion) and
//! `traffic` (admin: the traffic split, promotion and retirement), with the forecast and model
//! shapes they share.

pub mod forecasts;
pub mod models;
pub mod scoreboards;
pub mod traffic;

use chrono::{DateTime, Utc};
use mirai_platform::auth::Principal;
use mirai_proto::prediction::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::middleware::auth::forward;
use crate::problem::Problem;
use crate::routes::fields::{adjustment_name, time};
use crate::routes::shapes::ModelRef;
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(forecasts::routes())
        .merge(models::routes())
        .merge(scoreboards::routes())
        .merge(traffic::routes())
}

/// The caller when the request carries a credential; `None` for anonymous requests.
type MaybeCaller = Option<axum::Extension<Principal>>;

/// A gRPC request carrying the caller when there is one.
fn maybe_forward<T>(message: T, caller: &MaybeCaller) -> Result<tonic::Request<T>, Problem> {
    match caller {
        Some(axum::Extension(principal)) => forward(message, principal),
        None => Ok(tonic::Request::new(message)),
    }
}

fn millis(d: &Option<prost_types::Duration>) -> f64 {
    d.as_ref()
        .map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
}

// === Shared shapes ===

/// The part a version plays in traffic.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    Champion,
    Challenger,
    Shadow,
    Idle,
}

impl ModelRole {
    fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::ModelRole::try_from(value).ok()? {
            pb::ModelRole::Champion => Self::Champion,
            pb::ModelRole::Challenger => Self::Challenger,
            pb::ModelRole::Shadow => Self::Shadow,
            pb::ModelRole::Idle => Self::Idle,
            pb::ModelRole::Unspecified => return None,
        })
    }
}

/// Serving state of a version.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    Loading,
    Ready,
    Failed,
    Retired,
}

impl ModelStatus {
    fn from_wire(value: i32) -> Option<Self> {
        Some(match pb::ModelStatus::try_from(value).ok()? {
            pb::ModelStatus::Loading => Self::Loading,
            pb::ModelStatus::Ready => Self::Ready,
            pb::ModelStatus::Failed => Self::Failed,
            pb::ModelStatus::Retired => Self::Retired,
            pb::ModelStatus::Unspecified => return None,
        })
    }
}

/// One quantile of the forecast close.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuantileValue {
    /// Quantile level, e.g. 0.05.
    pub level: f64,
    /// Forecast close at that level.
    pub price: f64,
}

/// A next-bar forecast. Prices are in the symbol's currency, on the `adjustment` basis.
#[derive(Debug, Serialize, ToSchema)]
pub struct Forecast {
    pub prediction_id: String,
    pub symbol: String,
    pub model: Option<ModelRef>,
    pub role: Option<ModelRole>,
    /// Start of the last input bar: the forecast uses data up to its close.
    pub as_of: Option<DateTime<Utc>>,
    /// Estimated start of the forecast bar (the next weekday session).
    pub target_start: Option<DateTime<Utc>>,
    pub last_close: f64,
    /// Point forecast of the next close: the median.
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    /// Nominal coverage of [lower, upper], e.g. 0.9.
    pub interval_level: f64,
    /// Probability that the next close is above `last_close` (split normal through the
    /// quantiles).
    pub p_up: f64,
    pub quantiles: Vec<QuantileValue>,
    /// Time to produce it, batching included.
    pub latency_ms: f64,
    /// `raw`, `split` or `all`.
    pub adjustment: String,
}

impl From<pb::Forecast> for Forecast {
    fn from(f: pb::Forecast) -> Self {
        Self {
            role: ModelRole::from_wire(f.role),
            as_of: time(&f.as_of),
            target_start: time(&f.target_start),
            latency_ms: millis(&f.latency),
            adjustment: adjustment_name(f.adjustment),
            model: f.model.map(ModelRef::from),
            quantiles: f
                .quantiles
                .into_iter()
                .map(|q| QuantileValue {
                    level: q.level,
                    price: q.price,
                })
                .collect(),
            prediction_id: f.prediction_id,
            symbol: f.symbol,
            last_close: f.last_close,
            point: f.point,
            lower: f.lower,
            upper: f.upper,
            interval_level: f.interval_level,
            p_up: f.p_up,
        }
    }
}
