//! Live accuracy: one version's scoreboard and every version's, against the champion.

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::{Path, Problem, Query};
use crate::routes::fields::time;
use crate::routes::shapes::ModelRef;
use crate::routes::state::AppState;

use super::ModelRole;
use super::models::{Period, ScoreMetrics, period};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(scoreboard))
        .routes(routes!(scoreboards))
}

// === Scoreboards ===

/// Query of the scoreboards: `last` N matured predictions (default 250), or a `start`/`end`
/// range of target bars.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScoreboardQuery {
    /// The last N matured predictions, 1–100,000.
    pub last: Option<u32>,
    /// Inclusive start of the target bars (RFC 3339).
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end of the target bars (RFC 3339).
    pub end: Option<DateTime<Utc>>,
    /// Only this ticker.
    pub symbol: Option<String>,
}

impl ScoreboardQuery {
    fn window(&self) -> Result<Option<pb::ScoreWindow>, Problem> {
        use pb::score_window::Window;
        let window = match (self.last, self.start, self.end) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(Problem::invalid("give either last or start/end"));
            }
            (Some(n), None, None) => Some(Window::Last(n)),
            (None, None, None) => None,
            (None, start, end) => Some(Window::Period(pb::Period {
                start: start.map(wire::timestamp),
                end: end.map(wire::timestamp),
            })),
        };
        Ok(window.map(|w| pb::ScoreWindow { window: Some(w) }))
    }
}

/// A version's standing against the champion (Diebold–Mariano on daily pinball loss).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChampionComparison {
    pub champion: Option<ModelRef>,
    pub paired: u64,
    /// Mean (this − champion) pinball loss; negative means better.
    pub mean_loss_difference: f64,
    pub statistic: f64,
    pub p_value: f64,
    pub promotion_proposed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Scoreboard {
    pub model: Option<ModelRef>,
    pub role: Option<ModelRole>,
    pub window: Option<Period>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub symbol: String,
    pub metrics: Option<ScoreMetrics>,
    /// Predictions waiting for their target bar.
    pub pending: u64,
    pub updated_at: Option<DateTime<Utc>>,
    pub versus_champion: Option<ChampionComparison>,
}

impl From<pb::Scoreboard> for Scoreboard {
    fn from(s: pb::Scoreboard) -> Self {
        Self {
            role: ModelRole::from_wire(s.role),
            window: period(s.window),
            metrics: s.metrics.map(ScoreMetrics::from),
            updated_at: time(&s.updated_at),
            versus_champion: s.versus_champion.map(|c| ChampionComparison {
                champion: c.champion.map(ModelRef::from),
                paired: c.paired,
                mean_loss_difference: c.mean_loss_difference,
                statistic: c.statistic,
                p_value: c.p_value,
                promotion_proposed: c.promotion_proposed,
            }),
            model: s.model.map(ModelRef::from),
            symbol: s.symbol,
            pending: s.pending,
        }
    }
}

/// Live accuracy of one version over a window of matured predictions, with the baselines.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/scoreboard", tag = "models",
    params(("name" = String, Path, description = "Model name"), ("version" = String, Path, description = "Version label"), ScoreboardQuery),
    responses(
        (status = 200, description = "The scoreboard", body = Scoreboard),
        (status = 400, description = "Invalid window", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown version", body = Problem, content_type = "application/problem+json"),
    ))]
async fn scoreboard(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<ScoreboardQuery>,
) -> Result<axum::Json<Scoreboard>, Problem> {
    let response = state
        .upstreams
        .prediction()
        .get_scoreboard(pb::GetScoreboardRequest {
            model: Some(pb::ModelRef { name, version }),
            window: query.window()?,
            symbol: query.symbol.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(axum::Json(
        response
            .scoreboard
            .ok_or_else(|| Problem::missing("a scoreboard"))?
            .into(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScoreboardList {
    /// Champion first.
    pub scoreboards: Vec<Scoreboard>,
}

/// The scoreboards of every non-retired version over the same window, champion first.
#[utoipa::path(get, path = "/v1/models:scoreboards", tag = "models",
    params(ScoreboardQuery),
    responses((status = 200, description = "Scoreboards", body = ScoreboardList)))]
async fn scoreboards(
    State(state): State<AppState>,
    Query(query): Query<ScoreboardQuery>,
) -> Result<axum::Json<ScoreboardList>, Problem> {
    let response = state
        .upstreams
        .prediction()
        .list_scoreboards(pb::ListScoreboardsRequest {
            window: query.window()?,
            symbol: query.symbol.clone().unwrap_or_default(),
        })
        .await?
        .into_inner();
    Ok(axum::Json(ScoreboardList {
        scoreboards: response
            .scoreboards
            .into_iter()
            .map(Scoreboard::from)
            .collect(),
    }))
}
