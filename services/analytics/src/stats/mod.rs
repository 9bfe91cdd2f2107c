//! Risk and performance statistics over periodic (daily) simple returns, with empyrical's
//! conventions, checked against empyrical-reloaded by `tests/reference.rs`.
//!
//! Conventions (all as empyrical unless marked):
//! - Inputs are **simple returns** `p[t]/p[t−1] − 1`, one per period, oldest first, and must
//!   be finite (empyrical skips NaN; here a NaN is an error with its index).
//! - Annualisation: [`PERIODS_PER_YEAR`] = 252 daily periods. Annual return is the CAGR
//!   `(∏(1+r))^(252/n) − 1`; volatility scales by `√252`; alpha compounds the mean daily
//!   excess over 252 periods, `(1 + mean)^252 − 1`.
//! - Risk-free rate and required return are **per period** (a daily rate), subtracted from
//!   every return. Standard deviations are sample ones (n − 1); downside deviation divides by
//!   n over all periods, counting periods above the threshold as 0.
//! - Beta is `cov(r, b) / var(b)` on raw returns: empyrical ignores the risk-free rate there
//!   (it only enters alpha), and so does this.
//! - VaR is the `cutoff` quantile of the returns with linear interpolation (numpy's
//!   `percentile`); CVaR the mean of the worst `⌊(n−1)·cutoff⌋ + 1` returns. Both are
//!   **returns** (a 5% VaR of −0.019 means a loss of 1.9% or worse on 5% of days), not
//!   positive loss amounts. The default cutoff is [`DEFAULT_CUTOFF`] (5%).
//! - Max drawdown duration (ours; empyrical has none): bars from the peak to the recovery, or
//!   to the last bar when the curve never got back (see [`Drawdown`]).
//! - Undefined results (zero dispersion, no drawdown for Calmar) are [`Error::Undefined`] for
//!   the scalar functions and NaN inside rolling series. empyrical returns ±inf or NaN there.
//!
//! The arithmetic (sequential sums, two-pass deviations) mirrors what empyrical runs through
//! bottleneck, so results agree to a few ulps.
//!
//! # Layout
//! - `performance`: annual return and volatility, Sharpe, Sortino, downside risk, Calmar.
//! - `drawdown`: max drawdown with peak, trough, recovery and duration.
//! - `benchmark`: alpha, beta, correlation. `tail`: VaR, CVaR. `rolling`: rolling Sharpe,
//!   volatility, beta.

mod benchmark;
mod drawdown;
mod performance;
mod rolling;
mod tail;

pub use benchmark::{AlphaBeta, alpha_beta, beta, correlation};
pub use drawdown::{Drawdown, max_drawdown};
pub use performance::{
    annual_return, annual_volatility, calmar_ratio, downside_risk, sharpe_ratio, sortino_ratio,
};
pub use rolling::{rolling_beta, rolling_sharpe, rolling_volatility};
pub use tail::{conditional_value_at_risk, value_at_risk};

/// Trading days in a year: empyrical's `APPROX_BDAYS_PER_YEAR` for daily data.
pub const PERIODS_PER_YEAR: f64 = 252.0;

/// The VaR/CVaR cutoff used when the caller has no preference: 5%.
pub const DEFAULT_CUTOFF: f64 = 0.05;

/// Why a statistic could not be computed. The service maps `Undefined` to a null value in
/// its answer and the others to `INVALID_ARGUMENT`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Fewer returns than the statistic needs (two for anything with a standard deviation).
    #[error("{stat}: needs at least {needed} returns, got {got}")]
    NotEnoughData {
        stat: &'static str,
        needed: usize,
        got: usize,
    },

    /// NaN or an infinity among the inputs, with its position.
    #[error("{stat}: {input} is not finite at index {index}")]
    NonFinite {
        stat: &'static str,
        input: &'static str,
        index: usize,
    },

    /// The returns and the benchmark are not aligned (different lengths); align them by date
    /// before calling.
    #[error("{stat}: returns ({returns}) and benchmark ({benchmark}) differ in length")]
    LengthMismatch {
        stat: &'static str,
        returns: usize,
        benchmark: usize,
    },

    /// A parameter outside its domain: a cutoff not in (0, 1), a window below 2 or longer
    /// than the data, a non-finite rate.
    #[error("{stat}: {parameter} {reason}")]
    InvalidParameter {
        stat: &'static str,
        parameter: &'static str,
        reason: String,
    },

    /// The statistic has no value for these returns (zero volatility, no drawdown, ...).
    #[error("{stat} is undefined: {reason}")]
    Undefined {
        stat: &'static str,
        reason: &'static str,
    },
}

/// Results of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === shared helpers ===

/// Checks that there are at least `needed` returns, all finite.
pub(crate) fn check_returns(stat: &'static str, returns: &[f64], needed: usize) -> Result<()> {
    check_finite(stat, "returns", returns)?;
    if returns.len() < needed {
        return Err(Error::NotEnoughData {
            stat,
            needed,
            got: returns.len(),
        });
    }
    Ok(())
}

pub(crate) fn check_finite(stat: &'static str, input: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { stat, input, index }),
        None => Ok(()),
    }
}

/// Checks returns and benchmark together: same length, at least `needed`, all finite.
pub(crate) fn check_pair(
    stat: &'static str,
    returns: &[f64],
    benchmark: &[f64],
    needed: usize,
) -> Result<()> {
    if returns.len() != benchmark.len() {
        return Err(Error::LengthMismatch {
            stat,
            returns: returns.len(),
            benchmark: benchmark.len(),
        });
    }
    check_returns(stat, returns, needed)?;
    check_finite(stat, "benchmark", benchmark)
}

pub(crate) fn check_rate(stat: &'static str, parameter: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::InvalidParameter {
            stat,
            parameter,
            reason: format!("must be a finite per-period rate, got {v}"),
        });
    }
    Ok(())
}

/// Sequential mean (bottleneck's `nanmean` order: one running sum, then one division).
pub(crate) fn mean(x: &[f64]) -> f64 {
    let mut sum = 0.0;
    for &v in x {
        sum += v;
    }
    sum / x.len() as f64
}

/// Mean of `x − shift`, subtracting per element as empyrical's adjusted returns do.
pub(crate) fn mean_shifted(x: &[f64], shift: f64) -> f64 {
    if shift == 0.0 {
        return mean(x);
    }
    let mut sum = 0.0;
    for &v in x {
        sum += v - shift;
    }
    sum / x.len() as f64
}

/// Two-pass sample standard deviation of `x − shift` (bottleneck's `nanstd`, ddof 1), and
/// whether the values are all equal (empyrical's zero-dispersion test).
pub(crate) fn std_shifted(x: &[f64], shift: f64) -> (f64, bool) {
    let adj = |v: f64| if shift == 0.0 { v } else { v - shift };
    let m = mean_shifted(x, shift);
    let mut sum = 0.0;
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for &v in x {
        let a = adj(v);
        lo = lo.min(a);
        hi = hi.max(a);
        let d = a - m;
        sum += d * d;
    }
    ((sum / (x.len() - 1) as f64).sqrt(), lo == hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_is_the_sample_deviation() {
        let (sd, constant) = std_shifted(&[1.0, 2.0, 3.0, 4.0], 0.0);
        assert_eq!(sd, (5.0f64 / 3.0).sqrt());
        assert!(!constant);
        assert_eq!(std_shifted(&[0.5; 5], 0.1), (0.0, true));
    }

    #[test]
    fn pairs_must_be_aligned() {
        assert_eq!(
            check_pair("beta", &[0.1, 0.2], &[0.1], 2),
            Err(Error::LengthMismatch {
                stat: "beta",
                returns: 2,
                benchmark: 1
            })
        );
        assert!(matches!(
            check_pair("beta", &[0.1, 0.2], &[0.1, f64::NAN], 2),
            Err(Error::NonFinite {
                input: "benchmark",
                index: 1,
                ..
            })
        ));
    }
}
