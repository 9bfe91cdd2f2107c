//! `/v1/predictions` and `/v1/models`: forecasts, their history, the model registry, live
//! scoreboards and (admin) traffic, promotion and retirement (prediction service).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use mirai_platform::auth::Principal;
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Admin, Caller, forward};
use crate::routes::fields::{adjustment_name, time};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::shapes::{Maturity, ModelRef};
use crate::routes::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(predict))
        .routes(routes!(predict_batch))
        .routes(routes!(history))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
        .routes(routes!(get_version))
        .routes(routes!(scoreboard))
        .routes(routes!(scoreboards))
        .routes(routes!(get_traffic, set_traffic))
        .routes(routes!(promote))
        .routes(routes!(retire))
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

// === Forecasts ===

/// Query of `GET /v1/predictions/{symbol}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// Admin only: pin a READY version instead of the traffic split (with `version`).
    pub model: Option<String>,
    pub version: Option<String>,
}

/// Next-bar forecast of one symbol from the version the traffic split picks for the caller
/// (sticky per user; anonymous callers are keyed by the symbol). Stored in the history.
#[utoipa::path(get, path = "/v1/predictions/{symbol}", tag = "predictions",
    params(("symbol" = String, Path, description = "Ticker"), PredictQuery),
    responses(
        (status = 200, description = "The forecast", body = Forecast),
        (status = 400, description = "Not a ticker", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown symbol", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Too few bars for the model's window", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No version ready", body = Problem, content_type = "application/problem+json"),
    ))]
async fn predict(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path(symbol): Path<String>,
    Query(query): Query<PredictQuery>,
) -> Result<axum::Json<Forecast>, Problem> {
    let model = match (query.model, query.version) {
        (Some(name), Some(version)) => Some(pb::ModelRef { name, version }),
        (None, None) => None,
        _ => {
            return Err(Problem::invalid("model and version go together"));
        }
    };
    let request = maybe_forward(
        pb::PredictRequest {
            symbol,
            user_id: caller
                .as_ref()
                .map(|c| c.0.user_id.clone())
                .unwrap_or_default(),
            timeframe: 0,
            model,
        },
        &caller,
    )?;
    let response = state.upstreams.prediction().predict(request).await?.into_inner();
    Ok(axum::Json(
        response
            .forecast
            .ok_or_else(|| Problem::missing("a forecast"))?
            .into(),
    ))
}

/// Body of `POST /v1/predictions:batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1–500 tickers; duplicates are ignored.
    pub symbols: Vec<String>,
}

/// Why one symbol of a batch was not forecast.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchFailure {
    pub symbol: String,
    /// The HTTP status a single-symbol request would have answered.
    pub status: u16,
    pub detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchForecasts {
    /// In request order, for the symbols that succeeded.
    pub forecasts: Vec<Forecast>,
    pub failures: Vec<BatchFailure>,
}

/// Most distinct symbols in one batch of an anonymous caller (a signed-in one may ask for
/// 500): a batch costs up to one model run per symbol, and anonymous callers are limited only
/// per IP.
pub const ANONYMOUS_BATCH_MAX: usize = 25;

/// Refuses an anonymous batch of more than [`ANONYMOUS_BATCH_MAX`] distinct symbols.
fn check_anonymous_batch(symbols: &[String], caller: &MaybeCaller) -> Result<(), Problem> {
    if caller.is_some() {
        return Ok(());
    }
    let mut distinct: Vec<String> = symbols
        .iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() > ANONYMOUS_BATCH_MAX {
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "batch-too-large-for-anonymous",
            "Batch too large for an anonymous caller",
        )
        .detail(format!(
            "anonymous callers may ask for at most {ANONYMOUS_BATCH_MAX} symbols per batch \
             (got {}); authenticate for up to 500",
            distinct.len()
        )));
    }
    Ok(())
}

/// Forecasts for up to 500 symbols in one call (micro-batched through the model); symbols that
/// cannot be forecast are listed with the reason while the others succeed. Anonymous callers
/// may ask for at most 25.
#[utoipa::path(post, path = "/v1/predictions:batch", tag = "predictions",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "Forecasts and per-symbol failures", body = BatchForecasts),
        (status = 400, description = "No symbols, or more than 500", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "More than 25 symbols from an anonymous caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn predict_batch(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Json(body): Json<BatchRequest>,
) -> Result<axum::Json<BatchForecasts>, Problem> {
    check_anonymous_batch(&body.symbols, &caller)?;
    let request = maybe_forward(
        pb::PredictManyRequest {
            symbols: body.symbols,
            user_id: caller
                .as_ref()
                .map(|c| c.0.user_id.clone())
                .unwrap_or_default(),
            timeframe: 0,
        },
        &caller,
    )?;
    let response = state.upstreams.prediction().predict_many(request).await?.into_inner();
    Ok(axum::Json(BatchForecasts {
        forecasts: response.forecasts.into_iter().map(Forecast::from).collect(),
        failures: response
            .failures
            .into_iter()
            .map(|f| BatchFailure {
                status: Problem::from(tonic::Status::new(tonic::Code::from(f.code), "")).status,
                symbol: f.symbol,
                detail: f.message,
            })
            .collect(),
    }))
}

// === History ===

/// Query of `GET /v1/predictions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    pub symbol: Option<String>,
    /// Model name (with `version`).
    pub model: Option<String>,
    pub version: Option<String>,
    /// `true`: the caller's own predictions; otherwise the public track record (predictions
    /// of no user: the bar loop's and anonymous ones). Admins may name any `user_id`.
    #[serde(default)]
    pub mine: bool,
    pub user_id: Option<String>,
    /// Include shadow runs.
    #[serde(default)]
    pub include_shadow: bool,
    pub maturity: Option<Maturity>,
    /// Inclusive lower bound of the creation time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound of the creation time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// 1–1,000, default 100.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

/// What happened to a matured prediction (errors in log-return units).
#[derive(Debug, Serialize, ToSchema)]
pub struct Outcome {
    pub actual_close: f64,
    pub scored_at: Option<DateTime<Utc>>,
    pub abs_error: f64,
    pub naive_abs_error: f64,
    pub pinball_loss: f64,
    pub inside_interval: bool,
    pub direction_hit: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoredPrediction {
    pub forecast: Option<Forecast>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Returned to a caller (false for bar-loop and shadow runs).
    pub served: bool,
    pub created_at: Option<DateTime<Utc>>,
    /// Set once the next bar arrived.
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PredictionPage {
    pub predictions: Vec<StoredPrediction>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// Stored predictions, newest first, with their outcome once matured.
#[utoipa::path(get, path = "/v1/predictions", tag = "predictions",
    security(("bearer" = []), ("api_key" = [])),
    params(HistoryQuery),
    responses(
        (status = 200, description = "A page of predictions", body = PredictionPage),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's predictions", body = Problem, content_type = "application/problem+json"),
    ))]
async fn history(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<PredictionPage>, Problem> {
    let user_id = match (query.mine, query.user_id) {
        (true, _) => principal.user_id.clone(),
        (false, Some(id)) => id,
        (false, None) => String::new(),
    };
    let model = match (query.model, query.version) {
        (Some(name), Some(version)) => Some(pb::ModelRef { name, version }),
        _ => None,
    };
    let request = forward(
        pb::ListPredictionsRequest {
            symbol: query.symbol.unwrap_or_default(),
            model,
            user_id,
            include_shadow: query.include_shadow,
            maturity: match query.maturity {
                Some(Maturity::Matured) => pb::MaturityFilter::Matured,
                Some(Maturity::Pending) => pb::MaturityFilter::Pending,
                None => pb::MaturityFilter::Unspecified,
            }
            .into(),
            since: query.since.map(wire::timestamp),
            until: query.until.map(wire::timestamp),
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state.upstreams.prediction().list_predictions(request).await?.into_inner();
    Ok(axum::Json(PredictionPage {
        predictions: response
            .predictions
            .into_iter()
            .map(|p| StoredPrediction {
                forecast: p.forecast.map(Forecast::from),
                user_id: p.user_id,
                served: p.served,
                created_at: time(&p.created_at),
                outcome: p.outcome.map(|o| Outcome {
                    scored_at: time(&o.scored_at),
                    actual_close: o.actual_close,
                    abs_error: o.abs_error,
                    naive_abs_error: o.naive_abs_error,
                    pinball_loss: o.pinball_loss,
                    inside_interval: o.inside_interval,
                    direction_hit: o.direction_hit,
                }),
            })
            .collect(),
        next_page_token: response.next_page_token,
    }))
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

fn period(p: Option<pb::Period>) -> Option<Period> {
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
    let response = state.upstreams.prediction()
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
    let response = state.upstreams.prediction()
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
    let response = state.upstreams.prediction()
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
    let response = state.upstreams.prediction()
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
    let response = state.upstreams.prediction()
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
    let response = state.upstreams.prediction().get_traffic(request).await?.into_inner();
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
    let response = state.upstreams.prediction().set_traffic(request).await?.into_inner();
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
    let response = state.upstreams.prediction().promote(request).await?.into_inner();
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
    let response = state.upstreams.prediction().retire(request).await?.into_inner();
    Ok(axum::Json(Retirement {
        version: response.version.map(ModelVersion::from),
        traffic: response.traffic.map(Traffic::from),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_batches_are_capped_and_signed_in_ones_are_not() {
        let symbols = |n: usize| (0..n).map(|i| format!("S{i:03}")).collect::<Vec<_>>();
        assert!(check_anonymous_batch(&symbols(ANONYMOUS_BATCH_MAX), &None).is_ok());
        // Duplicates (in any spelling) count once.
        let mut repeated = symbols(ANONYMOUS_BATCH_MAX);
        repeated.extend(
            symbols(ANONYMOUS_BATCH_MAX)
                .iter()
                .map(|s| s.to_lowercase()),
        );
        assert!(check_anonymous_batch(&repeated, &None).is_ok());
        let refused = check_anonymous_batch(&symbols(ANONYMOUS_BATCH_MAX + 1), &None).unwrap_err();
        assert_eq!(refused.status, 429);
        let principal = Principal {
            user_id: "0190d3c4-0000-7000-8000-000000000001".into(),
            roles: [mirai_platform::auth::Role::User].into(),
            api_key_id: None,
        };
        assert!(check_anonymous_batch(&symbols(500), &Some(axum::Extension(principal))).is_ok());
    }
}
