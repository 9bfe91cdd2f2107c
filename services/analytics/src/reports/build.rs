//! Gathering a report's content: bars from the read model, forecasts and scores from the
//! prediction service. A subject without data fails the job with a reason the user can act on.

use chrono::{DateTime, Utc};
use mirai_platform::grpc::client::UpstreamChannel;
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use mirai_proto::prediction::v1 as prediction;
use mirai_proto::prediction::v1::prediction_service_client::PredictionServiceClient;
use sqlx::PgPool;

use super::content::{
    Band, Cell, Chart, Line, PALETTE, Panel, Report, ScoreboardView, StatisticsView, SubjectView,
    Table, TrendView,
};
use super::spec::{Spec, Subject};
use crate::analysis::{statistics, trends};
use crate::domain::{BarSeries, Range, Symbol, Timeframe};
use crate::indicators::{MaType, bbands, sma};
use crate::stats;
use crate::store::bars;

/// Fewest bars a symbol report is drawn from.
pub const MIN_BARS: usize = 30;
/// Rolling Sharpe window of the tear sheets: a quarter of trading days.
pub const ROLLING_WINDOW: usize = 63;
/// Most predictions read for a model report.
const MAX_PREDICTIONS: usize = 5_000;

/// Why a report could not be produced: shown to the user as the job's error.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The subject has no (or too little) data in the range.
    #[error("{0}")]
    NoData(String),
    /// The prediction service failed or is unreachable.
    #[error("prediction service: {0}")]
    Prediction(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The numerics refused the data (reported as is).
    #[error("{0}")]
    Numerics(String),
}

/// Where report content comes from.
#[derive(Clone)]
pub struct Sources {
    pub pool: PgPool,
    pub prediction: PredictionServiceClient<UpstreamChannel>,
}

impl Sources {
    pub fn new(pool: PgPool, prediction: UpstreamChannel) -> Self {
        Self {
            pool,
            prediction: PredictionServiceClient::new(prediction),
        }
    }
}

/// Builds the content of `spec`.
pub async fn build(sources: &Sources, spec: &Spec) -> Result<Report, BuildError> {
    let range = Range {
        start: Some(spec.start),
        end: Some(spec.end),
    };
    let mut report = skeleton(spec);
    let benchmark = match &spec.benchmark {
        Some(b) => Some((b.clone(), load(&sources.pool, b, &range).await?)),
        None => None,
    };
    match &spec.subject {
        Subject::Symbol(symbol) => {
            let series = load(&sources.pool, symbol, &range).await?;
            if series.len() < MIN_BARS {
                return Err(BuildError::NoData(format!(
                    "{symbol} has {} daily bars between {} and {}; a report needs at least {MIN_BARS}",
                    series.len(),
                    spec.start.format("%Y-%m-%d"),
                    spec.end.format("%Y-%m-%d")
                )));
            }
            symbol_report(&mut report, symbol, &series, benchmark.as_ref())?;
        }
        Subject::Watchlist(symbols) => {
            let mut loaded = Vec::new();
            for symbol in symbols {
                let series = load(&sources.pool, symbol, &range).await?;
                if series.len() < 3 {
                    report.missing.push(symbol.to_string());
                } else {
                    loaded.push((symbol.clone(), series));
                }
            }
            if loaded.is_empty() {
                return Err(BuildError::NoData(format!(
                    "none of {} has daily bars in the range",
                    report.subject.symbols.join(", ")
                )));
            }
            watchlist_report(&mut report, &loaded, benchmark.as_ref())?;
        }
        Subject::Model { name, version } => {
            model_report(&mut report, sources, name, version, spec).await?;
        }
    }
    Ok(report)
}

/// The report of `spec` before its content: title, subject and range.
pub fn skeleton(spec: &Spec) -> Report {
    Report {
        title: spec.title.clone(),
        subject: SubjectView {
            kind: spec.subject.kind(),
            symbols: spec.subject.symbols(),
            model: match &spec.subject {
                Subject::Model { name, version } => Some(format!("{name}@{version}")),
                _ => None,
            },
        },
        start: spec.start,
        end: spec.end,
        generated_at: Utc::now(),
        statistics: Vec::new(),
        trends: Vec::new(),
        correlation: None,
        scoreboard: None,
        missing: Vec::new(),
        table: Table::default(),
        chart: Chart::new(Vec::new()),
    }
}

async fn load(pool: &PgPool, symbol: &Symbol, range: &Range) -> Result<BarSeries, BuildError> {
    Ok(bars::load(pool, symbol, Timeframe::DAY, range).await?.0)
}

fn ratio_options() -> statistics::Options {
    statistics::Options {
        risk_free_rate: 0.0,
        required_return: 0.0,
        var_level: 0.95,
        rolling_window: 0,
    }
}

fn statistics_view(
    symbol: &Symbol,
    series: &BarSeries,
    benchmark: Option<&(Symbol, BarSeries)>,
) -> Result<StatisticsView, BuildError> {
    let bench = benchmark
        .filter(|(b, _)| b != symbol)
        .map(|(b, s)| (b.as_str(), s));
    let (s, _) = statistics::compute(symbol.as_str(), series, bench, &ratio_options())
        .map_err(|e| BuildError::Numerics(e.to_string()))?;
    let finite = |v: f64| v.is_finite().then_some(v);
    let dd = s.max_drawdown.unwrap_or_default();
    Ok(StatisticsView {
        symbol: symbol.to_string(),
        benchmark: (!s.benchmark.is_empty()).then(|| s.benchmark.clone()),
        bars: series.len(),
        cumulative_return: s.cumulative_return,
        annual_return: finite(s.annual_return),
        annual_volatility: finite(s.annual_volatility),
        sharpe: s.sharpe,
        sortino: s.sortino,
        max_drawdown: dd.depth,
        max_drawdown_bars: dd.duration_bars,
        calmar: s.calmar,
        beta: s.beta,
        alpha: s.alpha,
        correlation: s.correlation,
        value_at_risk_95: finite(s.value_at_risk),
        conditional_value_at_risk_95: finite(s.conditional_value_at_risk),
    })
}

fn time_cell(t: DateTime<Utc>) -> Cell {
    Cell::Text(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// Rolling Sharpe aligned to the bars (NaN where undefined), window shortened for short
/// ranges so there is always something to draw.
fn rolling_sharpe(series: &BarSeries) -> (usize, Vec<f64>) {
    let returns = series.returns();
    let window = ROLLING_WINDOW.min(returns.len() / 2).max(2);
    let mut values = vec![f64::NAN];
    values.extend(
        stats::rolling_sharpe(&returns, window, 0.0)
            .unwrap_or_else(|_| vec![f64::NAN; returns.len()]),
    );
    (window, values)
}

/// Fills `report` with the content of a symbol report over `series` (price with moving
/// averages and Bollinger bands, drawdown, rolling Sharpe, statistics, the table).
pub fn symbol_report(
    report: &mut Report,
    symbol: &Symbol,
    series: &BarSeries,
    benchmark: Option<&(Symbol, BarSeries)>,
) -> Result<(), BuildError> {
    let n = series.len();
    let numerics = |e: crate::indicators::Error| BuildError::Numerics(e.to_string());
    // The classic pair when the range allows it, shorter averages for short ranges.
    let periods: Vec<usize> = [50, 200].into_iter().filter(|p| *p < n).collect::<Vec<_>>();
    let periods = if periods.is_empty() {
        vec![20.min(n - 1)]
    } else {
        periods
    };
    let mut averages = Vec::new();
    for p in &periods {
        averages.push((*p, sma(&series.close, *p).map_err(numerics)?));
    }
    let bands = bbands(&series.close, 20, 2.0, 2.0, MaType::Sma).map_err(numerics)?;
    let drawdown = statistics::drawdown_series(&series.close);
    let (window, sharpe) = rolling_sharpe(series);

    report
        .statistics
        .push(statistics_view(symbol, series, benchmark)?);

    let mut columns: Vec<String> = ["time", "open", "high", "low", "close", "volume"]
        .map(String::from)
        .to_vec();
    columns.extend(averages.iter().map(|(p, _)| format!("sma_{p}")));
    columns.extend(["bb_upper", "bb_middle", "bb_lower", "drawdown"].map(String::from));
    columns.push(format!("rolling_sharpe_{window}"));
    let rows = (0..n)
        .map(|i| {
            let mut row = vec![
                time_cell(series.start[i]),
                Cell::number(series.open[i]),
                Cell::number(series.high[i]),
                Cell::number(series.low[i]),
                Cell::number(series.close[i]),
                Cell::number(series.volume[i]),
            ];
            row.extend(averages.iter().map(|(_, v)| Cell::number(v[i])));
            row.extend([
                Cell::number(bands.upper[i]),
                Cell::number(bands.middle[i]),
                Cell::number(bands.lower[i]),
                Cell::number(drawdown[i]),
                Cell::number(sharpe[i]),
            ]);
            row
        })
        .collect();
    report.table = Table { columns, rows };

    let mut price_lines = vec![Line::new("Close", PALETTE[0], series.close.clone())];
    for (k, (p, values)) in averages.into_iter().enumerate() {
        price_lines.push(Line::new(format!("SMA {p}"), PALETTE[1 + k], values));
    }
    price_lines.push(Line::new(
        "BB upper (20, 2)",
        PALETTE[4],
        bands.upper.clone(),
    ));
    price_lines.push(Line::new(
        "BB lower (20, 2)",
        PALETTE[5],
        bands.lower.clone(),
    ));
    report.chart = Chart::new(vec![
        Panel {
            title: format!("{symbol}: close, moving averages and Bollinger bands"),
            y_label: "Price".into(),
            x: series.start.clone(),
            bands: vec![Band {
                name: "Bollinger band".into(),
                color: PALETTE[4],
                lower: bands.lower,
                upper: bands.upper,
            }],
            lines: price_lines,
            zero_line: false,
            percent: false,
        },
        Panel {
            title: "Drawdown from the running peak".into(),
            y_label: "Drawdown".into(),
            x: series.start.clone(),
            bands: vec![Band {
                name: "Drawdown".into(),
                color: PALETTE[3],
                lower: drawdown.clone(),
                upper: vec![0.0; n],
            }],
            lines: vec![Line::new("Drawdown", PALETTE[3], drawdown)],
            zero_line: true,
            percent: true,
        },
        Panel {
            title: format!("Rolling Sharpe ratio ({window} bars, annualised)"),
            y_label: "Sharpe".into(),
            x: series.start.clone(),
            bands: Vec::new(),
            lines: vec![Line::new(
                format!("Rolling Sharpe {window}"),
                PALETTE[2],
                sharpe,
            )],
            zero_line: true,
            percent: false,
        },
    ]);
    Ok(())
}

fn watchlist_report(
    report: &mut Report,
    loaded: &[(Symbol, BarSeries)],
    benchmark: Option<&(Symbol, BarSeries)>,
) -> Result<(), BuildError> {
    // One time axis: every bar start any symbol has.
    let mut axis: Vec<DateTime<Utc>> = loaded.iter().flat_map(|(_, s)| s.start.clone()).collect();
    axis.sort();
    axis.dedup();
    let mut columns = vec!["time".to_owned()];
    let mut growth_lines = Vec::new();
    let mut drawdown_lines = Vec::new();
    let mut close_columns = Vec::new();
    for (k, (symbol, series)) in loaded.iter().enumerate() {
        report
            .statistics
            .push(statistics_view(symbol, series, benchmark)?);
        let at = |values: &[f64]| -> Vec<f64> {
            let mut j = 0;
            axis.iter()
                .map(|t| {
                    while j < series.start.len() && series.start[j] < *t {
                        j += 1;
                    }
                    if j < series.start.len() && series.start[j] == *t {
                        values[j]
                    } else {
                        f64::NAN
                    }
                })
                .collect()
        };
        let first = series.close[0];
        let growth: Vec<f64> = series.close.iter().map(|c| c / first).collect();
        let drawdown = statistics::drawdown_series(&series.close);
        let color = PALETTE[k % PALETTE.len()];
        columns.push(format!("{symbol}_close"));
        columns.push(format!("{symbol}_growth"));
        close_columns.push(at(&series.close));
        close_columns.push(at(&growth));
        growth_lines.push(Line::new(symbol.to_string(), color, at(&growth)));
        drawdown_lines.push(Line::new(
            format!("{symbol} drawdown"),
            color,
            at(&drawdown),
        ));
        let windows = trends::Windows {
            short: 50,
            long: 200,
            momentum_lookback: trends::YEAR.min(series.len() - 1),
            momentum_skip: 0,
            volatility: 20,
        };
        report
            .trends
            .push(trend_view(trends::of(symbol.as_str(), series, &windows)));
    }
    // Rank among the watchlist.
    let mut ranked: Vec<mirai_proto::analytics::v1::SymbolTrend> = report
        .trends
        .iter()
        .map(|t| pb::SymbolTrend {
            symbol: t.symbol.clone(),
            momentum: t.momentum,
            ..Default::default()
        })
        .collect();
    trends::rank(&mut ranked);
    for t in &mut report.trends {
        t.momentum_rank = ranked
            .iter()
            .find(|r| r.symbol == t.symbol)
            .map_or(0, |r| r.momentum_rank);
    }
    let matrix = loaded
        .iter()
        .map(|(_, a)| {
            loaded
                .iter()
                .map(|(_, b)| {
                    let (_, ra, rb) = statistics::aligned(a, b);
                    stats::correlation(&ra, &rb).ok()
                })
                .collect()
        })
        .collect();
    report.correlation = Some(matrix);
    report.subject.symbols = loaded.iter().map(|(s, _)| s.to_string()).collect();
    report.table = Table {
        columns,
        rows: axis
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut row = vec![time_cell(*t)];
                row.extend(close_columns.iter().map(|c| Cell::number(c[i])));
                row
            })
            .collect(),
    };
    report.chart = Chart::new(vec![
        Panel {
            title: "Growth of 1 invested at the start".into(),
            y_label: "Growth".into(),
            x: axis.clone(),
            bands: Vec::new(),
            lines: growth_lines,
            zero_line: false,
            percent: false,
        },
        Panel {
            title: "Drawdown from the running peak".into(),
            y_label: "Drawdown".into(),
            x: axis,
            bands: Vec::new(),
            lines: drawdown_lines,
            zero_line: true,
            percent: true,
        },
    ]);
    Ok(())
}

fn trend_view(t: pb::SymbolTrend) -> TrendView {
    let name = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_ascii_lowercase();
    TrendView {
        ma_regime: name(t.ma_regime().as_str_name(), "MA_REGIME_"),
        last_cross: name(t.last_cross().as_str_name(), "CROSS_KIND_"),
        volatility_regime: name(t.volatility_regime().as_str_name(), "VOLATILITY_REGIME_"),
        symbol: t.symbol,
        close: t.close,
        momentum: t.momentum,
        momentum_rank: 0,
        from_52w_high: t.from_52w_high,
        from_52w_low: t.from_52w_low,
        volatility: t.volatility,
    }
}

async fn model_report(
    report: &mut Report,
    sources: &Sources,
    name: &str,
    version: &str,
    spec: &Spec,
) -> Result<(), BuildError> {
    let model = prediction::ModelRef {
        name: name.to_owned(),
        version: version.to_owned(),
    };
    let upstream = |s: tonic::Status| BuildError::Prediction(s.message().to_owned());
    let period = prediction::Period {
        start: Some(wire::timestamp(spec.start)),
        end: Some(wire::timestamp(spec.end)),
    };
    let board = sources
        .prediction
        .clone()
        .get_scoreboard(prediction::GetScoreboardRequest {
            model: Some(model.clone()),
            window: Some(prediction::ScoreWindow {
                window: Some(prediction::score_window::Window::Period(period)),
            }),
            symbol: String::new(),
        })
        .await
        .map_err(upstream)?
        .into_inner()
        .scoreboard
        .unwrap_or_default();
    let m = board.metrics.unwrap_or_default();
    report.scoreboard = Some(ScoreboardView {
        model: format!("{name}@{version}"),
        role: board
            .role()
            .as_str_name()
            .trim_start_matches("MODEL_ROLE_")
            .to_ascii_lowercase(),
        count: m.count,
        pending: board.pending,
        mae: m.mae,
        rmse: m.rmse,
        mase: m.mase,
        hit_rate: m.hit_rate,
        coverage: m.coverage,
        nominal_coverage: m.nominal_coverage,
        pinball_loss: m.pinball_loss,
    });

    // The public track record of the version (bar-loop and anonymous predictions).
    let mut predictions = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = sources
            .prediction
            .clone()
            .list_predictions(prediction::ListPredictionsRequest {
                model: Some(model.clone()),
                since: Some(wire::timestamp(spec.start)),
                until: Some(wire::timestamp(spec.end)),
                page_size: 1000,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .map_err(upstream)?
            .into_inner();
        predictions.extend(page.predictions);
        if page.next_page_token.is_empty() || predictions.len() >= MAX_PREDICTIONS {
            break;
        }
        page_token = page.next_page_token;
    }
    predictions.retain(|p| p.forecast.is_some());
    if predictions.is_empty() {
        return Err(BuildError::NoData(format!(
            "{name}@{version} made no predictions between {} and {}",
            spec.start.format("%Y-%m-%d"),
            spec.end.format("%Y-%m-%d")
        )));
    }
    // Oldest first, by target bar.
    predictions.sort_by_key(|p| {
        p.forecast
            .as_ref()
            .and_then(|f| f.target_start.as_ref())
            .map(|t| (t.seconds, t.nanos))
    });
    // The chart follows the symbol with the most predictions.
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for p in &predictions {
        *counts
            .entry(
                p.forecast
                    .as_ref()
                    .map(|f| f.symbol.clone())
                    .unwrap_or_default(),
            )
            .or_default() += 1;
    }
    let charted = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(s, _)| s.clone())
        .unwrap_or_default();
    report.subject.symbols = counts.keys().cloned().collect();

    let columns = [
        "target_start",
        "symbol",
        "as_of",
        "last_close",
        "point",
        "lower",
        "upper",
        "interval_level",
        "p_up",
        "actual_close",
        "inside_interval",
        "abs_error",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    let (mut x, mut lower, mut upper, mut point, mut actual, mut error) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for p in &predictions {
        let f = p.forecast.as_ref().expect("retained");
        let target = f.target_start.as_ref().and_then(wire::datetime);
        let outcome = p.outcome.as_ref();
        rows.push(vec![
            target.map_or(Cell::Text(String::new()), time_cell),
            Cell::Text(f.symbol.clone()),
            f.as_of
                .as_ref()
                .and_then(wire::datetime)
                .map_or(Cell::Text(String::new()), time_cell),
            Cell::number(f.last_close),
            Cell::number(f.point),
            Cell::number(f.lower),
            Cell::number(f.upper),
            Cell::number(f.interval_level),
            Cell::number(f.p_up),
            Cell::Number(outcome.map(|o| o.actual_close)),
            Cell::Number(outcome.map(|o| f64::from(u8::from(o.inside_interval)))),
            Cell::Number(outcome.map(|o| o.abs_error)),
        ]);
        if f.symbol == charted
            && let Some(t) = target
        {
            x.push(t);
            lower.push(f.lower);
            upper.push(f.upper);
            point.push(f.point);
            let a = outcome.map_or(f64::NAN, |o| o.actual_close);
            actual.push(a);
            error.push(a - f.point);
        }
    }
    report.table = Table { columns, rows };
    report.chart = Chart::new(vec![
        Panel {
            title: format!("{name}@{version} on {charted}: forecast interval against the close"),
            y_label: "Price".into(),
            x: x.clone(),
            bands: vec![Band {
                name: "Forecast interval".into(),
                color: PALETTE[0],
                lower: lower.clone(),
                upper: upper.clone(),
            }],
            lines: vec![
                Line::new("Interval lower", PALETTE[9], lower),
                Line::new("Interval upper", PALETTE[4], upper),
                Line::new("Point forecast", PALETTE[1], point),
                Line::new("Actual close", PALETTE[3], actual),
            ],
            zero_line: false,
            percent: false,
        },
        Panel {
            title: "Forecast error (actual − point)".into(),
            y_label: "Price".into(),
            x,
            bands: Vec::new(),
            lines: vec![Line::new("Error", PALETTE[2], error)],
            zero_line: true,
            percent: false,
        },
    ]);
    Ok(())
}
