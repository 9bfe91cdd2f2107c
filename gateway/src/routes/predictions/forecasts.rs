//! Forecasts of one symbol and of a batch, and the stored predictions with their outcomes.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::fields::time;
use crate::routes::shapes::Maturity;
use crate::routes::state::AppState;

use super::{Forecast, MaybeCaller, maybe_forward};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(predict))
        .routes(routes!(predict_batch))
        .routes(routes!(history))
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
    let response = state
        .upstreams
        .prediction()
        .predict(request)
        .await?
        .into_inner();
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
    let response = state
        .upstreams
        .prediction()
        .predict_many(request)
        .await?
        .into_inner();
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
    let response = state
        .upstreams
        .prediction()
        .list_predictions(request)
        .await?
        .into_inner();
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

#[cfg(test)]
mod tests {
    use mirai_platform::auth::Principal;

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
