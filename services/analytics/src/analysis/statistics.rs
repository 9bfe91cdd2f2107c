//! Risk and performance statistics of a run of daily bars: the `stats` functions (empyrical)
//! composed into the wire's `Statistics`, plus the few quantities empyrical does not have
//! (cumulative return, skew and kurtosis as pandas computes them, best and worst period).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;

use crate::domain::BarSeries;
use crate::error::{Error, Result};
use crate::stats;

/// Periods per year of daily bars (empyrical's constant; the only annualisation the
/// reference-checked functions implement).
pub const DAILY: u32 = 252;

/// What the caller asked for, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Annual risk-free rate (fraction).
    pub risk_free_rate: f64,
    /// Annual required return of the Sortino ratio (fraction).
    pub required_return: f64,
    /// VaR/CVaR confidence level in (0.5, 1).
    pub var_level: f64,
    /// Rolling window in returns; 0 for none.
    pub rolling_window: usize,
}

impl Options {
    pub fn from_wire(r: &pb::GetStatisticsRequest) -> Result<Self> {
        for (field, v) in [
            ("risk_free_rate", r.risk_free_rate),
            ("required_return", r.required_return),
        ] {
            if !(v.is_finite() && v > -1.0 && v < 10.0) {
                return Err(Error::invalid(
                    field,
                    format!("must be an annual rate as a fraction above -1, got {v}"),
                ));
            }
        }
        let var_level = if r.var_level == 0.0 {
            0.95
        } else {
            r.var_level
        };
        if !(var_level > 0.5 && var_level < 1.0) {
            return Err(Error::invalid(
                "var_level",
                format!("must be in (0.5, 1), e.g. 0.95, got {}", r.var_level),
            ));
        }
        if !matches!(r.periods_per_year, 0 | DAILY) {
            return Err(Error::invalid(
                "periods_per_year",
                format!(
                    "only {DAILY} (daily bars, empyrical's annualisation) is supported, got {}",
                    r.periods_per_year
                ),
            ));
        }
        if r.rolling_window == 1 {
            return Err(Error::invalid(
                "rolling_window",
                "must be at least 2 (or 0 for none)",
            ));
        }
        Ok(Self {
            risk_free_rate: r.risk_free_rate,
            required_return: r.required_return,
            var_level,
            rolling_window: r.rolling_window as usize,
        })
    }
}

/// An annual rate as the per-period rate that compounds to it (quantstats' conversion).
pub fn per_period(annual: f64) -> f64 {
    if annual == 0.0 {
        0.0
    } else {
        (1.0 + annual).powf(1.0 / f64::from(DAILY)) - 1.0
    }
}

/// `Undefined` is an absent value; anything else a bad request.
fn optional(result: stats::Result<f64>) -> Result<Option<f64>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(stats::Error::Undefined { .. }) => Ok(None),
        Err(e) => Err(Error::invalid("start", e.to_string())),
    }
}

fn required(result: stats::Result<f64>) -> Result<f64> {
    Ok(optional(result)?.unwrap_or(f64::NAN))
}

/// The bar starts two series share, with the returns of each on them.
pub type Aligned = (Vec<DateTime<Utc>>, Vec<f64>, Vec<f64>);

/// Returns of `a` and `b` on the bar starts both have, for statistics against a benchmark.
pub fn aligned(a: &BarSeries, b: &BarSeries) -> Aligned {
    let closes: HashMap<DateTime<Utc>, f64> = b
        .start
        .iter()
        .copied()
        .zip(b.close.iter().copied())
        .collect();
    let common: Vec<(DateTime<Utc>, f64, f64)> = a
        .start
        .iter()
        .zip(&a.close)
        .filter_map(|(t, c)| closes.get(t).map(|bc| (*t, *c, *bc)))
        .collect();
    let mut starts = Vec::new();
    let mut ra = Vec::new();
    let mut rb = Vec::new();
    for w in common.windows(2) {
        starts.push(w[1].0);
        ra.push(w[1].1 / w[0].1 - 1.0);
        rb.push(w[1].2 / w[0].2 - 1.0);
    }
    (starts, ra, rb)
}

/// Skewness and excess kurtosis with pandas' bias corrections (what quantstats reports); NaN
/// below 3 and 4 returns respectively, or without dispersion.
pub fn skew_kurtosis(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    if x.len() < 3 {
        return (f64::NAN, f64::NAN);
    }
    let mean = x.iter().sum::<f64>() / n;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for &v in x {
        let d = v - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    // pandas zeroes a sum of squares below 1e-14 as rounding noise (`_zero_out_fperr`).
    if m2.abs() < 1e-14 {
        return (f64::NAN, f64::NAN);
    }
    let (m2, m3, m4) = (m2 / n, m3 / n, m4 / n);
    let skew = (n * (n - 1.0)).sqrt() / (n - 2.0) * m3 / m2.powf(1.5);
    let kurtosis = if x.len() < 4 {
        f64::NAN
    } else {
        ((n + 1.0) * (m4 / (m2 * m2)) - 3.0 * (n - 1.0)) * (n - 1.0) / ((n - 2.0) * (n - 3.0))
    };
    (skew, kurtosis)
}

/// The drawdown from the running peak at every bar (≤ 0), aligned to the bars.
pub fn drawdown_series(close: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    close
        .iter()
        .map(|&c| {
            peak = peak.max(c);
            c / peak - 1.0
        })
        .collect()
}

/// The statistics of `bars` (optionally against `benchmark`), and the rolling series when a
/// window was asked for.
pub fn compute(
    symbol: &str,
    bars: &BarSeries,
    benchmark: Option<(&str, &BarSeries)>,
    options: &Options,
) -> Result<(pb::Statistics, Option<pb::RollingStatistics>)> {
    if bars.len() < 3 {
        return Err(Error::invalid(
            "start",
            format!(
                "the range holds {} bars of {symbol}; statistics need at least 3",
                bars.len()
            ),
        ));
    }
    let returns = bars.returns();
    let rf = per_period(options.risk_free_rate);
    let req = per_period(options.required_return);
    let cutoff = 1.0 - options.var_level;
    let dd = stats::max_drawdown(&returns).map_err(|e| Error::invalid("start", e))?;
    let at = |position: usize| Some(wire::timestamp(bars.start[position]));
    let (skew, kurtosis) = skew_kurtosis(&returns);
    let mut statistics = pb::Statistics {
        symbol: symbol.to_owned(),
        benchmark: String::new(),
        first_bar: at(0),
        last_bar: at(bars.len() - 1),
        periods: returns.len() as u32,
        periods_per_year: DAILY,
        cumulative_return: returns.iter().fold(1.0, |acc, r| acc * (1.0 + r)) - 1.0,
        annual_return: required(stats::annual_return(&returns))?,
        annual_volatility: required(stats::annual_volatility(&returns))?,
        sharpe: optional(stats::sharpe_ratio(&returns, rf))?,
        sortino: optional(stats::sortino_ratio(&returns, req))?,
        max_drawdown: Some(pb::Drawdown {
            depth: dd.depth,
            peak: at(dd.peak),
            trough: at(dd.trough),
            recovery: dd.recovery.and_then(at),
            duration_bars: dd.duration as u32,
        }),
        calmar: optional(stats::calmar_ratio(&returns))?,
        beta: None,
        alpha: None,
        correlation: None,
        var_level: options.var_level,
        value_at_risk: required(stats::value_at_risk(&returns, cutoff))?,
        conditional_value_at_risk: required(stats::conditional_value_at_risk(&returns, cutoff))?,
        skew,
        kurtosis,
        best_period: returns.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        worst_period: returns.iter().copied().fold(f64::INFINITY, f64::min),
    };
    let mut benchmark_returns = None;
    if let Some((name, series)) = benchmark {
        let (starts, ra, rb) = aligned(bars, series);
        if ra.len() < 2 {
            return Err(Error::invalid(
                "benchmark",
                format!(
                    "{name} shares {} bars with {symbol} in the range; need at least 3",
                    ra.len() + usize::from(!ra.is_empty())
                ),
            ));
        }
        statistics.benchmark = name.to_owned();
        match stats::alpha_beta(&ra, &rb, rf) {
            Ok(ab) => {
                statistics.alpha = Some(ab.alpha);
                statistics.beta = Some(ab.beta);
            }
            Err(stats::Error::Undefined { .. }) => {}
            Err(e) => return Err(Error::invalid("benchmark", e)),
        }
        statistics.correlation = optional(stats::correlation(&ra, &rb))?;
        benchmark_returns = Some((starts, ra, rb));
    }

    let rolling = match options.rolling_window {
        0 => None,
        window => Some(rolling(bars, &returns, benchmark_returns, window, rf, req)?),
    };
    Ok((statistics, rolling))
}

fn rolling(
    bars: &BarSeries,
    returns: &[f64],
    benchmark: Option<Aligned>,
    window: usize,
    rf: f64,
    req: f64,
) -> Result<pb::RollingStatistics> {
    if window > returns.len() {
        return Err(Error::invalid(
            "rolling_window",
            format!(
                "is longer than the data ({window} > {} returns in the range)",
                returns.len()
            ),
        ));
    }
    let bad = |e: stats::Error| Error::invalid("rolling_window", e);
    let lead = |values: Vec<f64>| {
        let mut out = vec![f64::NAN; window - 1];
        out.extend(values);
        out
    };
    let windows = || returns.windows(window);
    let mut series = vec![
        (
            "rolling_return",
            lead(
                windows()
                    .map(|w| stats::annual_return(w).unwrap_or(f64::NAN))
                    .collect(),
            ),
        ),
        (
            "rolling_volatility",
            stats::rolling_volatility(returns, window).map_err(bad)?,
        ),
        (
            "rolling_sharpe",
            stats::rolling_sharpe(returns, window, rf).map_err(bad)?,
        ),
        (
            "rolling_sortino",
            lead(
                windows()
                    .map(|w| stats::sortino_ratio(w, req).unwrap_or(f64::NAN))
                    .collect(),
            ),
        ),
        ("drawdown", drawdown_series(&bars.close)[1..].to_vec()),
    ];
    if let Some((starts, ra, rb)) = benchmark {
        let mut by_start: HashMap<DateTime<Utc>, f64> = HashMap::new();
        if window <= ra.len() {
            let beta = stats::rolling_beta(&ra, &rb, window).map_err(bad)?;
            by_start = starts.into_iter().zip(beta).collect();
        }
        series.push((
            "rolling_beta",
            bars.start[1..]
                .iter()
                .map(|t| by_start.get(t).copied().unwrap_or(f64::NAN))
                .collect(),
        ));
    }
    Ok(pb::RollingStatistics {
        window: window as u32,
        timestamps: bars.start[1..]
            .iter()
            .map(|t| wire::timestamp(*t))
            .collect(),
        series: series
            .into_iter()
            .map(|(name, values)| pb::Series {
                name: name.to_owned(),
                values: optional_values(&values),
            })
            .collect(),
    })
}

/// NaN as an absent value.
pub fn optional_values(values: &[f64]) -> Vec<pb::OptionalDouble> {
    values
        .iter()
        .map(|v| pb::OptionalDouble {
            value: v.is_finite().then_some(*v),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_and_kurtosis_match_pandas() {
        // pandas 3.1.1 (scripts/analytics-reference venv): Series([0.01, -0.02, 0.03, 0.005, -0.01]).skew() / .kurt()
        let (s, k) = skew_kurtosis(&[0.01, -0.02, 0.03, 0.005, -0.01]);
        assert!((s - 0.331_947_369_216_205_3).abs() < 1e-12, "{s}");
        assert!((k - (-0.309_532_505_478_451)).abs() < 1e-12, "{k}");
        assert!(skew_kurtosis(&[0.1, 0.1, 0.1]).0.is_nan());
    }

    #[test]
    fn annual_rates_become_daily_ones() {
        let daily = per_period(0.05);
        assert!(((1.0 + daily).powi(252) - 1.05).abs() < 1e-12);
        assert_eq!(per_period(0.0), 0.0);
    }

    #[test]
    fn drawdown_is_measured_from_the_running_peak() {
        assert_eq!(
            drawdown_series(&[10.0, 12.0, 9.0, 12.0]),
            vec![0.0, 0.0, -0.25, 0.0]
        );
    }
}
