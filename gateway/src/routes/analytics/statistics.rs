//! `GET /v1/analytics/{symbol}/stats`: risk and performance statistics of a symbol.

use axum::extract::State;
use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::problem::{Path, Problem, Query};
use crate::routes::fields::time;
use crate::routes::state::AppState;

use super::{times, values};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(statistics))
}

// === Statistics ===

/// Query of `GET /v1/analytics/{symbol}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Benchmark ticker for beta, alpha and correlation, e.g. `SPY`.
    pub benchmark: Option<String>,
    /// RFC 3339, inclusive.
    pub start: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub end: Option<DateTime<Utc>>,
    /// Annual risk-free rate as a fraction; default 0 (empyrical's).
    pub risk_free_rate: Option<f64>,
    /// Annual required return of the Sortino ratio as a fraction; default 0.
    pub required_return: Option<f64>,
    /// Confidence of VaR and CVaR in (0.5, 1); default 0.95.
    pub var_level: Option<f64>,
    /// Annualisation; default 252.
    pub periods_per_year: Option<u32>,
    /// Window of the rolling series in bars (≥ 2); none by default.
    pub rolling_window: Option<u32>,
}

/// A drawdown episode.
#[derive(Debug, Serialize, ToSchema)]
pub struct Drawdown {
    /// Fraction ≤ 0.
    pub depth: f64,
    pub peak: Option<DateTime<Utc>>,
    pub trough: Option<DateTime<Utc>>,
    /// `null` while not recovered.
    pub recovery: Option<DateTime<Utc>>,
    /// Bars from peak to recovery (or to the last bar).
    pub duration_bars: u32,
}

/// Risk and performance statistics (empyrical definitions; returns and ratios are fractions).
#[derive(Debug, Serialize, ToSchema)]
pub struct Statistics {
    pub symbol: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub benchmark: String,
    pub first_bar: Option<DateTime<Utc>>,
    pub last_bar: Option<DateTime<Utc>>,
    /// Number of returns.
    pub periods: u32,
    pub periods_per_year: u32,
    pub cumulative_return: f64,
    pub annual_return: f64,
    pub annual_volatility: f64,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub max_drawdown: Option<Drawdown>,
    pub calmar: Option<f64>,
    pub beta: Option<f64>,
    pub alpha: Option<f64>,
    pub correlation: Option<f64>,
    pub var_level: f64,
    /// Historical one-period VaR (the (1 − level) quantile of returns).
    pub value_at_risk: f64,
    /// Mean of the returns at or below the VaR.
    pub conditional_value_at_risk: f64,
    pub skew: f64,
    /// Excess kurtosis.
    pub kurtosis: f64,
    pub best_period: f64,
    pub worst_period: f64,
}

/// A named series aligned to the enclosing `timestamps`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NamedSeries {
    pub name: String,
    /// `null` before the window fills.
    pub values: Vec<Option<f64>>,
}

/// Rolling statistics over a fixed window.
#[derive(Debug, Serialize, ToSchema)]
pub struct RollingStatistics {
    pub window: u32,
    pub timestamps: Vec<DateTime<Utc>>,
    /// `rolling_return`, `rolling_volatility`, `rolling_sharpe`, `rolling_sortino`,
    /// `drawdown`, and with a benchmark `rolling_beta`.
    pub series: Vec<NamedSeries>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatisticsReport {
    pub statistics: Statistics,
    /// Present when `rolling_window` was given.
    pub rolling: Option<RollingStatistics>,
}

/// Risk and performance statistics of a symbol's daily returns over a range, optionally
/// against a benchmark and with rolling versions.
#[utoipa::path(get, path = "/v1/analytics/{symbol}/stats", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker"), StatsQuery),
    responses(
        (status = 200, description = "The statistics", body = StatisticsReport),
        (status = 400, description = "Inverted range, rolling window longer than the data, unknown benchmark, bad level", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bars of the symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn statistics(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(symbol): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<axum::Json<StatisticsReport>, Problem> {
    let request = forward(
        pb::GetStatisticsRequest {
            symbol,
            benchmark: query.benchmark.unwrap_or_default(),
            start: query.start.map(wire::timestamp),
            end: query.end.map(wire::timestamp),
            timeframe: mirai_proto::stock::v1::Timeframe::OneDay.into(),
            risk_free_rate: query.risk_free_rate.unwrap_or_default(),
            required_return: query.required_return.unwrap_or_default(),
            var_level: query.var_level.unwrap_or_default(),
            periods_per_year: query.periods_per_year.unwrap_or_default(),
            rolling_window: query.rolling_window.unwrap_or_default(),
        },
        &principal,
    )?;
    let r = state
        .upstreams
        .analytics()
        .get_statistics(request)
        .await?
        .into_inner();
    let s = r.statistics.ok_or_else(|| Problem::missing("statistics"))?;
    Ok(axum::Json(StatisticsReport {
        statistics: Statistics {
            first_bar: time(&s.first_bar),
            last_bar: time(&s.last_bar),
            max_drawdown: s.max_drawdown.map(|d| Drawdown {
                depth: d.depth,
                peak: time(&d.peak),
                trough: time(&d.trough),
                recovery: time(&d.recovery),
                duration_bars: d.duration_bars,
            }),
            symbol: s.symbol,
            benchmark: s.benchmark,
            periods: s.periods,
            periods_per_year: s.periods_per_year,
            cumulative_return: s.cumulative_return,
            annual_return: s.annual_return,
            annual_volatility: s.annual_volatility,
            sharpe: s.sharpe,
            sortino: s.sortino,
            calmar: s.calmar,
            beta: s.beta,
            alpha: s.alpha,
            correlation: s.correlation,
            var_level: s.var_level,
            value_at_risk: s.value_at_risk,
            conditional_value_at_risk: s.conditional_value_at_risk,
            skew: s.skew,
            kurtosis: s.kurtosis,
            best_period: s.best_period,
            worst_period: s.worst_period,
        },
        rolling: r.rolling.map(|r| RollingStatistics {
            window: r.window,
            timestamps: times(&r.timestamps),
            series: r
                .series
                .into_iter()
                .map(|s| NamedSeries {
                    name: s.name,
                    values: values(s.values),
                })
                .collect(),
        }),
    }))
}
