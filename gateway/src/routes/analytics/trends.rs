//! `GET /v1/analytics/trends`: moving-average regime, momentum ranking, 52-week range and
//! volatility regime across symbols.

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Problem, Query};
use crate::routes::fields::{enum_name, items, time};
use crate::routes::state::AppState;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(trends))
}

// === Trends ===

/// Query of `GET /v1/analytics/trends`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrendsQuery {
    /// Comma-separated tickers (at most 1,000); default every active symbol of the read model.
    pub symbols: Option<String>,
    /// Evaluate at the last bar at or before this time (RFC 3339); default the latest.
    pub as_of: Option<DateTime<Utc>>,
    /// Short moving-average period in daily bars; default 50.
    pub short_window: Option<u32>,
    /// Long moving-average period; default 200.
    pub long_window: Option<u32>,
    /// Momentum lookback in bars; default 252.
    pub momentum_lookback: Option<u32>,
    /// Most recent bars momentum skips (12-1 convention: 21); default 0.
    pub momentum_skip: Option<u32>,
    /// Realised-volatility window; default 20.
    pub volatility_window: Option<u32>,
}

/// Trend indicators of one symbol on daily bars.
#[derive(Debug, Serialize, ToSchema)]
pub struct Trend {
    pub symbol: String,
    pub as_of: Option<DateTime<Utc>>,
    pub close: f64,
    pub ma_short: Option<f64>,
    pub ma_long: Option<f64>,
    /// `bullish`, `bearish`, or `unspecified` with too little data.
    pub ma_regime: String,
    /// `golden`, `death`, or `unspecified` when none.
    pub last_cross: String,
    pub last_cross_at: Option<DateTime<Utc>>,
    /// Return over the momentum lookback (fraction).
    pub momentum: Option<f64>,
    /// 1 = strongest momentum among the symbols answered; 0 when unranked.
    pub momentum_rank: u32,
    pub high_52w: f64,
    pub low_52w: f64,
    /// close / high_52w − 1.
    pub from_52w_high: f64,
    /// close / low_52w − 1.
    pub from_52w_low: f64,
    /// Annualised realised volatility.
    pub volatility: Option<f64>,
    /// Percentile (0–1) of that volatility within its last year.
    pub volatility_percentile: Option<f64>,
    /// `low`, `normal`, `high`, or `unspecified`.
    pub volatility_regime: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trends {
    /// By momentum rank, unranked last.
    pub trends: Vec<Trend>,
    /// Requested tickers without bars.
    pub missing: Vec<String>,
}

/// Moving-average regime, momentum ranking, distance from the 52-week high and low and the
/// volatility regime across symbols.
#[utoipa::path(get, path = "/v1/analytics/trends", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(TrendsQuery),
    responses(
        (status = 200, description = "Trends ranked by momentum", body = Trends),
        (status = 400, description = "Bad windows (short ≥ long) or too many tickers", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn trends(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<TrendsQuery>,
) -> Result<axum::Json<Trends>, Problem> {
    let request = forward(
        pb::GetTrendsRequest {
            symbols: items(query.symbols.as_deref()).map(str::to_owned).collect(),
            as_of: query.as_of.map(wire::timestamp),
            short_window: query.short_window.unwrap_or_default(),
            long_window: query.long_window.unwrap_or_default(),
            momentum_lookback: query.momentum_lookback.unwrap_or_default(),
            momentum_skip: query.momentum_skip.unwrap_or_default(),
            volatility_window: query.volatility_window.unwrap_or_default(),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .analytics()
        .get_trends(request)
        .await?
        .into_inner();
    Ok(axum::Json(Trends {
        trends: r
            .trends
            .into_iter()
            .map(|t| Trend {
                as_of: time(&t.as_of),
                last_cross_at: time(&t.last_cross_at),
                ma_regime: enum_name(
                    pb::MaRegime::try_from(t.ma_regime)
                        .ok()
                        .map(|v| v.as_str_name()),
                    "MA_REGIME_",
                ),
                last_cross: enum_name(
                    pb::CrossKind::try_from(t.last_cross)
                        .ok()
                        .map(|v| v.as_str_name()),
                    "CROSS_KIND_",
                ),
                volatility_regime: enum_name(
                    pb::VolatilityRegime::try_from(t.volatility_regime)
                        .ok()
                        .map(|v| v.as_str_name()),
                    "VOLATILITY_REGIME_",
                ),
                symbol: t.symbol,
                close: t.close,
                ma_short: t.ma_short,
                ma_long: t.ma_long,
                momentum: t.momentum,
                momentum_rank: t.momentum_rank,
                high_52w: t.high_52w,
                low_52w: t.low_52w,
                from_52w_high: t.from_52w_high,
                from_52w_low: t.from_52w_low,
                volatility: t.volatility,
                volatility_percentile: t.volatility_percentile,
            })
            .collect(),
        missing: r.missing,
    }))
}
