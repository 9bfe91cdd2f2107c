//! Rolling statistics: each value covers the `window` returns ending at that position.
//!
//! Outputs are aligned to the input: element `t` covers returns `t+1−window ..= t`, the first
//! `window − 1` elements are NaN, and so is a window whose statistic is undefined (a Sharpe
//! ratio of constant returns, a beta against a flat benchmark). Each window is computed afresh
//! with the same two-pass arithmetic as the full-sample statistic (`O(n·window)`), which keeps
//! every value as accurate as a standalone call rather than drifting like a running sum.

use super::benchmark::beta_of;
use super::performance::sharpe_of;
use super::{Error, PERIODS_PER_YEAR, Result, check_pair, check_rate, check_returns, std_shifted};

fn check_window(stat: &'static str, window: usize, len: usize) -> Result<()> {
    if window < 2 {
        return Err(Error::InvalidParameter {
            stat,
            parameter: "window",
            reason: format!("must be at least 2, got {window}"),
        });
    }
    if window > len {
        return Err(Error::InvalidParameter {
            stat,
            parameter: "window",
            reason: format!("is longer than the data ({window} > {len} returns)"),
        });
    }
    Ok(())
}

fn aligned(len: usize, window: usize, values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut out = Vec::with_capacity(len);
    out.resize(window - 1, f64::NAN);
    out.extend(values);
    out
}

/// Rolling annualised Sharpe ratio (see [`super::sharpe_ratio`]).
pub fn rolling_sharpe(returns: &[f64], window: usize, risk_free: f64) -> Result<Vec<f64>> {
    const STAT: &str = "rolling_sharpe";
    check_rate(STAT, "risk_free", risk_free)?;
    check_returns(STAT, returns, 2)?;
    check_window(STAT, window, returns.len())?;
    Ok(aligned(
        returns.len(),
        window,
        returns
            .windows(window)
            .map(|w| sharpe_of(STAT, w, risk_free).unwrap_or(f64::NAN)),
    ))
}

/// Rolling annualised volatility (see [`super::annual_volatility`]).
pub fn rolling_volatility(returns: &[f64], window: usize) -> Result<Vec<f64>> {
    const STAT: &str = "rolling_volatility";
    check_returns(STAT, returns, 2)?;
    check_window(STAT, window, returns.len())?;
    let scale = PERIODS_PER_YEAR.powf(1.0 / 2.0);
    Ok(aligned(
        returns.len(),
        window,
        returns
            .windows(window)
            .map(|w| std_shifted(w, 0.0).0 * scale),
    ))
}

/// Rolling beta against an aligned benchmark (see [`super::beta`]).
pub fn rolling_beta(returns: &[f64], benchmark: &[f64], window: usize) -> Result<Vec<f64>> {
    const STAT: &str = "rolling_beta";
    check_pair(STAT, returns, benchmark, 2)?;
    check_window(STAT, window, returns.len())?;
    Ok(aligned(
        returns.len(),
        window,
        returns
            .windows(window)
            .zip(benchmark.windows(window))
            .map(|(r, b)| beta_of(r, b).unwrap_or(f64::NAN)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{annual_volatility, beta, sharpe_ratio};

    const R: [f64; 8] = [0.01, -0.02, 0.015, 0.003, -0.007, 0.0, 0.012, -0.004];

    #[test]
    fn each_window_equals_the_full_statistic_on_that_slice() {
        let s = rolling_sharpe(&R, 4, 0.0001).unwrap();
        let v = rolling_volatility(&R, 4).unwrap();
        let b: Vec<f64> = R.iter().rev().copied().collect();
        let rb = rolling_beta(&R, &b, 4).unwrap();
        assert!(
            s[..3]
                .iter()
                .chain(&v[..3])
                .chain(&rb[..3])
                .all(|x| x.is_nan())
        );
        for t in 3..R.len() {
            let w = &R[t - 3..=t];
            assert_eq!(s[t], sharpe_ratio(w, 0.0001).unwrap());
            assert_eq!(v[t], annual_volatility(w).unwrap());
            assert_eq!(rb[t], beta(w, &b[t - 3..=t]).unwrap());
        }
    }

    #[test]
    fn an_undefined_window_is_nan() {
        let r = [0.0, 0.0, 0.0, 0.01, 0.02];
        let s = rolling_sharpe(&r, 3, 0.0).unwrap();
        assert!(s[2].is_nan());
        assert!(!s[4].is_nan());
    }

    #[test]
    fn the_window_must_fit_the_data() {
        assert!(matches!(
            rolling_volatility(&R, 9),
            Err(Error::InvalidParameter {
                parameter: "window",
                ..
            })
        ));
        assert!(matches!(
            rolling_sharpe(&R, 1, 0.0),
            Err(Error::InvalidParameter {
                parameter: "window",
                ..
            })
        ));
    }
}
