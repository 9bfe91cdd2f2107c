//! `/v1/analytics` and `/v1/reports`: indicators, statistics and trends over the analytics
//! service's read model of bars, and asynchronous report jobs with their files (analytics
//! service).

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::middleware::auth::{Caller, forward};
use crate::routes::fields::{adjustment_name, enum_name, items, time};
use crate::routes::shapes::ModelRef;
use crate::problem::{Json, Path, Problem, Query};
use crate::routes::state::AppState;
use crate::routes::shapes::Timeframe;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(indicators))
        .routes(routes!(statistics))
        .routes(routes!(trends))
        .routes(routes!(create_report, list_reports))
        .routes(routes!(get_report, delete_report))
        .routes(routes!(download_report))
}


fn times(ts: &[prost_types::Timestamp]) -> Vec<DateTime<Utc>> {
    ts.iter().filter_map(wire::datetime).collect()
}

fn values(values: Vec<pb::OptionalDouble>) -> Vec<Option<f64>> {
    values.into_iter().map(|v| v.value).collect()
}

// === Indicators ===

/// Query of `GET /v1/analytics/{symbol}/indicators`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IndicatorsQuery {
    /// 1–20 indicators, comma-separated, each `name` or `name(param=value,…)` with TA-Lib's
    /// parameter names and defaults, e.g. `sma(timeperiod=20),bbands(timeperiod=20,nbdevup=2),rsi,macd`.
    /// Names: sma, ema, wma, dema, tema, bbands, rsi, macd, stoch, adx, cci, mfi, obv, atr,
    /// natr, returns, log_returns. Two special parameters: `input` (open, high, low, close,
    /// volume; default close) and `alias` (prefix of the output names).
    pub indicators: String,
    /// Default `1Day`.
    pub timeframe: Option<Timeframe>,
    /// RFC 3339, inclusive.
    pub start: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub end: Option<DateTime<Utc>>,
    /// `true`: bars before `start` feed the warm-up so values are defined from `start` on;
    /// default `false`: computed on the range alone, exactly as TA-Lib on that slice.
    #[serde(default)]
    pub warm_up: bool,
}

/// Splits `a(x=1,y=2),b` at the commas outside parentheses.
fn split_top_level(raw: &str) -> Result<Vec<&str>, Problem> {
    let (mut depth, mut from, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&raw[from..i]);
                from = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(Problem::invalid(format!(
                "indicators: unbalanced parentheses in {raw:?}"
            )));
        }
    }
    if depth != 0 {
        return Err(Problem::invalid(format!(
            "indicators: unbalanced parentheses in {raw:?}"
        )));
    }
    parts.push(&raw[from..]);
    Ok(parts.into_iter().map(str::trim).collect())
}

/// One `name(param=value,…)` item as the gRPC spec; unknown names and malformed values are
/// named in the error.
fn indicator_spec(item: &str) -> Result<pb::IndicatorSpec, Problem> {
    let (name, args) = match item.split_once('(') {
        Some((name, rest)) => {
            let args = rest.strip_suffix(')').ok_or_else(|| {
                Problem::invalid(format!("indicators: {item:?} must end with ')'"))
            })?;
            (name.trim(), args)
        }
        None => (item, ""),
    };
    let indicator = pb::Indicator::from_str_name(&format!("INDICATOR_{}", name.to_ascii_uppercase()))
        .filter(|i| *i != pb::Indicator::Unspecified)
        .ok_or_else(|| {
            Problem::invalid(format!(
                "indicators: unknown indicator {name:?}; known: sma, ema, wma, dema, tema, bbands, rsi, macd, stoch, adx, cci, mfi, obv, atr, natr, returns, log_returns"
            ))
        })?;
    let mut spec = pb::IndicatorSpec {
        indicator: indicator.into(),
        ..Default::default()
    };
    for arg in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (key, value) = arg
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| {
                Problem::invalid(format!("indicators: {name}: {arg:?} is not param=value"))
            })?;
        match key {
            "alias" => spec.alias = value.to_owned(),
            "input" => {
                spec.input = pb::PriceField::from_str_name(&format!(
                    "PRICE_FIELD_{}",
                    value.to_ascii_uppercase()
                ))
                .filter(|f| *f != pb::PriceField::Unspecified)
                .ok_or_else(|| {
                    Problem::invalid(format!(
                        "indicators: {name}: input {value:?} is not open, high, low, close or volume"
                    ))
                })?
                .into();
            }
            _ => {
                let number = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        Problem::invalid(format!(
                            "indicators: {name}: {key}={value:?} is not a number"
                        ))
                    })?;
                spec.params.insert(key.to_owned(), number);
            }
        }
    }
    Ok(spec)
}

/// One output series of one indicator, aligned to the response's `timestamps`.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndicatorLine {
    /// `{alias}` for single-output indicators, `{alias}.{output}` otherwise, e.g.
    /// `bbands_20_2_2.upper`.
    pub name: String,
    /// e.g. `bbands`.
    pub indicator: String,
    /// `value`, or one of several outputs (`upper`, `middle`, `lower`, `macd`, `signal`,
    /// `hist`, `slowk`, `slowd`).
    pub output: String,
    /// Parameters used, defaults filled in.
    pub params: BTreeMap<String, f64>,
    /// TA-Lib lookback: leading bars without a value.
    pub lookback: u32,
    /// One per timestamp; `null` during warm-up.
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Indicators {
    pub symbol: String,
    pub timeframe: Timeframe,
    /// Adjustment basis of the bars (`raw`, `split`, `all`).
    pub adjustment: String,
    /// Bar start times, ascending.
    pub timestamps: Vec<DateTime<Utc>>,
    /// In request order; multi-output indicators contribute several.
    pub series: Vec<IndicatorLine>,
}

/// Technical indicators of a symbol (TA-Lib values and warm-up conventions) over a range of
/// the analytics read model's bars.
#[utoipa::path(get, path = "/v1/analytics/{symbol}/indicators", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("symbol" = String, Path, description = "Ticker"), IndicatorsQuery),
    responses(
        (status = 200, description = "Series aligned to the bar timestamps", body = Indicators),
        (status = 400, description = "Unknown indicator or parameter, window longer than the data, inverted range", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No bars of the symbol", body = Problem, content_type = "application/problem+json"),
    ))]
async fn indicators(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(symbol): Path<String>,
    Query(query): Query<IndicatorsQuery>,
) -> Result<axum::Json<Indicators>, Problem> {
    let specs = split_top_level(&query.indicators)?
        .into_iter()
        .filter(|item| !item.is_empty())
        .map(indicator_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let timeframe = query.timeframe.unwrap_or(Timeframe::OneDay);
    let request = forward(
        pb::GetIndicatorsRequest {
            symbol,
            timeframe: mirai_proto::stock::v1::Timeframe::from(timeframe).into(),
            start: query.start.map(wire::timestamp),
            end: query.end.map(wire::timestamp),
            indicators: specs,
            warm_up_from_history: query.warm_up,
        },
        &principal,
    )?;
    let r = state.upstreams.analytics().get_indicators(request).await?.into_inner();
    Ok(axum::Json(Indicators {
        symbol: r.symbol,
        timeframe,
        adjustment: adjustment_name(r.adjustment),
        timestamps: times(&r.timestamps),
        series: r
            .series
            .into_iter()
            .map(|s| IndicatorLine {
                indicator: enum_name(
                    pb::Indicator::try_from(s.indicator)
                        .ok()
                        .map(|i| i.as_str_name()),
                    "INDICATOR_",
                ),
                name: s.name,
                output: s.output,
                params: s.params.into_iter().collect(),
                lookback: s.lookback,
                values: values(s.values),
            })
            .collect(),
    }))
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
    let r = state.upstreams.analytics().get_statistics(request).await?.into_inner();
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
    let r = state.upstreams.analytics().get_trends(request).await?.into_inner();
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

// === Reports ===

/// A report file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Every number of the report (`application/json`).
    Json,
    /// The time series, one row per bar (`text/csv`).
    Csv,
    /// The charts as one tear sheet (`image/png`).
    Png,
    /// The charts as one tear sheet (`image/svg+xml`).
    Svg,
}

impl From<ReportFormat> for pb::ReportFormat {
    fn from(f: ReportFormat) -> Self {
        match f {
            ReportFormat::Json => Self::Json,
            ReportFormat::Csv => Self::Csv,
            ReportFormat::Png => Self::Png,
            ReportFormat::Svg => Self::Svg,
        }
    }
}

/// Body of `POST /v1/reports`: exactly one of `symbol`, `watchlist` and `model`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReport {
    /// One ticker: price with moving averages and Bollinger bands, drawdown, rolling Sharpe.
    pub symbol: Option<String>,
    /// 1–100 tickers: statistics side by side, growth, drawdowns, trends.
    pub watchlist: Option<Vec<String>>,
    /// A model version: its forecast interval against what happened, scoreboard, history.
    pub model: Option<ModelRef>,
    /// Inclusive start (RFC 3339); default five years before `end`.
    pub start: Option<DateTime<Utc>>,
    /// Exclusive end; default now.
    pub end: Option<DateTime<Utc>>,
    /// Default all four.
    #[serde(default)]
    pub formats: Vec<ReportFormat>,
    /// Benchmark ticker for the statistics, e.g. `SPY`.
    pub benchmark: Option<String>,
    /// At most 200 characters; default generated.
    pub title: Option<String>,
}

/// One produced file.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportFile {
    /// `json`, `csv`, `png` or `svg`.
    pub format: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: u64,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// Where to download it.
    pub url: String,
}

/// A report job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportJob {
    pub report_id: String,
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watchlist: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub formats: Vec<String>,
    pub title: String,
    /// `queued`, `running`, `succeeded` or `failed` (a job never stays running past its
    /// timeout).
    pub status: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Produced files (succeeded only).
    pub files: Vec<ReportFile>,
    pub created_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// When the job and its files are deleted.
    pub expires_at: Option<DateTime<Utc>>,
}

fn format_name(value: i32) -> String {
    enum_name(
        pb::ReportFormat::try_from(value)
            .ok()
            .map(|f| f.as_str_name()),
        "REPORT_FORMAT_",
    )
}

fn job_of(job: Option<pb::ReportJob>) -> Result<ReportJob, Problem> {
    use pb::report_subject::Subject;
    let j = job.ok_or_else(|| Problem::missing("a report"))?;
    let (mut symbol, mut watchlist, mut model) = (None, None, None);
    match j.subject.and_then(|s| s.subject) {
        Some(Subject::Symbol(s)) => symbol = Some(s),
        Some(Subject::Watchlist(w)) => watchlist = Some(w.symbols),
        Some(Subject::Model(m)) => model = Some(ModelRef::from(m)),
        None => {}
    }
    let files = j
        .files
        .into_iter()
        .map(|f| {
            let format = format_name(f.format);
            ReportFile {
                url: format!("/v1/reports/{}/files/{format}", j.report_id),
                format,
                file_name: f.file_name,
                content_type: f.content_type,
                size_bytes: f.size_bytes,
                sha256: f.sha256,
            }
        })
        .collect();
    Ok(ReportJob {
        symbol,
        watchlist,
        model,
        start: time(&j.start),
        end: time(&j.end),
        formats: j.formats.iter().map(|f| format_name(*f)).collect(),
        status: enum_name(
            pb::ReportStatus::try_from(j.status)
                .ok()
                .map(|s| s.as_str_name()),
            "REPORT_STATUS_",
        ),
        files,
        created_at: time(&j.created_at),
        started_at: time(&j.started_at),
        finished_at: time(&j.finished_at),
        expires_at: time(&j.expires_at),
        report_id: j.report_id,
        user_id: j.user_id,
        title: j.title,
        error: j.error,
    })
}

/// Starts a report job for a symbol, a watchlist or a model version and answers at once with
/// the queued job; poll its `Location` until it has succeeded or failed (a
/// `report.completed` event is emitted too).
#[utoipa::path(post, path = "/v1/reports", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreateReport,
    responses(
        (status = 202, description = "The job, queued", body = ReportJob,
            headers(("location" = String, description = "The job's URL"))),
        (status = 400, description = "No or several subjects, bad tickers, inverted range, unknown format", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many reports queued or running, or stored (count or bytes), for the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Json(body): Json<CreateReport>,
) -> Result<Response, Problem> {
    use pb::report_subject::Subject;
    let subject = match (body.symbol, body.watchlist, body.model) {
        (Some(symbol), None, None) => Subject::Symbol(symbol),
        (None, Some(symbols), None) => Subject::Watchlist(pb::Watchlist { symbols }),
        (None, None, Some(model)) => Subject::Model(model.into()),
        _ => {
            return Err(Problem::invalid(
                "subject: give exactly one of symbol, watchlist and model",
            ));
        }
    };
    let request = forward(
        pb::CreateReportRequest {
            user_id: principal.user_id.clone(),
            subject: Some(pb::ReportSubject {
                subject: Some(subject),
            }),
            start: body.start.map(wire::timestamp),
            end: body.end.map(wire::timestamp),
            formats: body
                .formats
                .into_iter()
                .map(|f| pb::ReportFormat::from(f).into())
                .collect(),
            benchmark: body.benchmark.unwrap_or_default(),
            title: body.title.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state.upstreams.analytics().create_report(request).await?.into_inner();
    let job = job_of(response.report)?;
    let location = format!("/v1/reports/{}", job.report_id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(job),
    )
        .into_response())
}

/// Query of `GET /v1/reports`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportsQuery {
    /// Comma-separated states to include (`queued`, `running`, `succeeded`, `failed`);
    /// default all.
    pub status: Option<String>,
    /// 1–100, default 20.
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReportPage {
    /// Newest first.
    pub reports: Vec<ReportJob>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub next_page_token: String,
}

/// The caller's report jobs, newest first.
#[utoipa::path(get, path = "/v1/reports", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(ReportsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = ReportPage),
        (status = 400, description = "Unknown status or page token", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_reports(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Query(query): Query<ReportsQuery>,
) -> Result<axum::Json<ReportPage>, Problem> {
    let statuses = items(query.status.as_deref())
        .map(|s| {
            pb::ReportStatus::from_str_name(&format!("REPORT_STATUS_{}", s.to_ascii_uppercase()))
                .filter(|v| *v != pb::ReportStatus::Unspecified)
                .map(i32::from)
                .ok_or_else(|| {
                    Problem::invalid(format!(
                        "status: {s:?} is not queued, running, succeeded or failed"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = forward(
        pb::ListReportsRequest {
            user_id: principal.user_id.clone(),
            statuses,
            page_size: query.page_size.unwrap_or_default(),
            page_token: query.page_token.unwrap_or_default(),
        },
        &principal,
    )?;
    let response = state.upstreams.analytics().list_reports(request).await?.into_inner();
    Ok(axum::Json(ReportPage {
        reports: response
            .reports
            .into_iter()
            .map(|j| job_of(Some(j)))
            .collect::<Result<_, _>>()?,
        next_page_token: response.next_page_token,
    }))
}

/// One of the caller's report jobs: its state and, once it has succeeded, its files.
#[utoipa::path(get, path = "/v1/reports/{report_id}", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("report_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = ReportJob),
        (status = 400, description = "Not a report id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report of the caller", body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(report_id): Path<String>,
) -> Result<axum::Json<ReportJob>, Problem> {
    let request = forward(
        pb::GetReportRequest {
            user_id: principal.user_id.clone(),
            report_id,
        },
        &principal,
    )?;
    let response = state.upstreams.analytics().get_report(request).await?.into_inner();
    Ok(axum::Json(job_of(response.report)?))
}

/// Deletes one of the caller's report jobs and its files; deleting one that is gone succeeds.
#[utoipa::path(delete, path = "/v1/reports/{report_id}", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(("report_id" = String, Path, description = "Job id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a report id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(report_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let request = forward(
        pb::DeleteReportRequest {
            user_id: principal.user_id.clone(),
            report_id,
        },
        &principal,
    )?;
    state.upstreams.analytics().delete_report(request).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A file's bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBytes(pub Vec<u8>);

/// Downloads one file of a succeeded report, streamed, with its content type and file name.
#[utoipa::path(get, path = "/v1/reports/{report_id}/files/{format}", tag = "analytics",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("report_id" = String, Path, description = "Job id"),
        ("format" = ReportFormat, Path, description = "Which file"),
    ),
    responses(
        (status = 200, description = "The file, as an attachment",
            content((FileBytes = "application/json"), (FileBytes = "text/csv"), (FileBytes = "image/png"), (FileBytes = "image/svg+xml"))),
        (status = 400, description = "Not a report id or format", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report, or a format the job did not produce", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
    ))]
async fn download_report(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path((report_id, format)): Path<(String, ReportFormat)>,
) -> Result<Response, Problem> {
    let request = forward(
        pb::DownloadReportRequest {
            user_id: principal.user_id.clone(),
            report_id,
            format: pb::ReportFormat::from(format).into(),
        },
        &principal,
    )?;
    let mut stream = state.upstreams.analytics().download_report(request).await?.into_inner();
    // The first message carries the metadata; errors before it are the request's answer.
    let first = stream
        .message()
        .await?
        .ok_or_else(|| Problem::from(tonic::Status::internal("upstream sent no file")))?;
    let meta = first
        .file
        .ok_or_else(|| Problem::from(tonic::Status::internal("upstream sent no file metadata")))?;
    let rest = stream.map(|m| m.map(|m| Bytes::from(m.data)));
    let body = Body::from_stream(
        futures::stream::once(async move { Ok(Bytes::from(first.data)) }).chain(rest),
    );
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    let value = |text: &str| {
        HeaderValue::from_str(text)
            .map_err(|_| Problem::from(tonic::Status::internal("upstream sent a bad file name")))
    };
    headers.insert(header::CONTENT_TYPE, value(&meta.content_type)?);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size_bytes));
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(&format!("attachment; filename=\"{}\"", meta.file_name))?,
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicator_lists_parse_with_their_parameters() {
        let items =
            split_top_level("sma(timeperiod=20), bbands(timeperiod=20,nbdevup=2),rsi").unwrap();
        assert_eq!(
            items,
            vec![
                "sma(timeperiod=20)",
                "bbands(timeperiod=20,nbdevup=2)",
                "rsi"
            ]
        );
        let bbands = indicator_spec(items[1]).unwrap();
        assert_eq!(bbands.indicator(), pb::Indicator::Bbands);
        assert_eq!(bbands.params["nbdevup"], 2.0);
        let high = indicator_spec("ema(input=high,alias=fast)").unwrap();
        assert_eq!(high.input(), pb::PriceField::High);
        assert_eq!(high.alias, "fast");
        assert_eq!(
            indicator_spec("log_returns").unwrap().indicator(),
            pb::Indicator::LogReturns
        );
    }

    #[test]
    fn malformed_indicator_lists_name_the_fault() {
        let detail = |raw: &str| {
            split_top_level(raw)
                .and_then(|items| {
                    items
                        .into_iter()
                        .map(indicator_spec)
                        .collect::<Result<Vec<_>, _>>()
                })
                .unwrap_err()
                .detail
                .unwrap()
        };
        assert!(detail("smaa").contains("unknown indicator \"smaa\""));
        assert!(detail("unspecified").contains("unknown indicator"));
        assert!(detail("sma(timeperiod=20").contains("unbalanced"));
        assert!(detail("sma(timeperiod=x)").contains("timeperiod=\"x\" is not a number"));
        assert!(detail("sma(20)").contains("is not param=value"));
        assert!(detail("sma(input=vwap)").contains("input \"vwap\""));
    }
}
