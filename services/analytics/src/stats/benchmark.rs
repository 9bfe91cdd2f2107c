//! Statistics against a benchmark: beta, alpha, correlation.

use super::{Error, PERIODS_PER_YEAR, Result, check_pair, check_rate, mean};

/// Jensen's alpha (annualised) and beta of returns against a benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlphaBeta {
    /// `(1 + mean((r − rf) − β·(b − rf)))^252 − 1`.
    pub alpha: f64,
    /// `cov(r, b) / var(b)`.
    pub beta: f64,
}

/// Beta of `returns` against `benchmark` (aligned, same length): `cov(r, b) / var(b)` with
/// population moments, as empyrical. Undefined when the benchmark's variance is below 1e-30.
pub fn beta(returns: &[f64], benchmark: &[f64]) -> Result<f64> {
    const STAT: &str = "beta";
    check_pair(STAT, returns, benchmark, 2)?;
    beta_of(returns, benchmark).ok_or(Error::Undefined {
        stat: STAT,
        reason: "the benchmark has no variance",
    })
}

/// empyrical's `beta_aligned`: centre the benchmark only (`mean((b − b̄)·r)` equals the
/// covariance), divide by `mean((b − b̄)²)`.
pub(crate) fn beta_of(returns: &[f64], benchmark: &[f64]) -> Option<f64> {
    let b_mean = mean(benchmark);
    let n = returns.len() as f64;
    let mut cov = 0.0;
    let mut var = 0.0;
    for (&r, &b) in returns.iter().zip(benchmark) {
        let res = b - b_mean;
        cov += res * r;
        var += res * res;
    }
    let var = var / n;
    if var < 1.0e-30 {
        return None;
    }
    Some((cov / n) / var)
}

/// Alpha and beta against `benchmark` with a per-period `risk_free` rate. As empyrical, the
/// rate enters alpha only; beta is computed on the raw returns.
pub fn alpha_beta(returns: &[f64], benchmark: &[f64], risk_free: f64) -> Result<AlphaBeta> {
    const STAT: &str = "alpha_beta";
    check_rate(STAT, "risk_free", risk_free)?;
    check_pair(STAT, returns, benchmark, 2)?;
    let beta = beta_of(returns, benchmark).ok_or(Error::Undefined {
        stat: STAT,
        reason: "the benchmark has no variance",
    })?;
    let adjust = |v: f64| if risk_free == 0.0 { v } else { v - risk_free };
    let mut sum = 0.0;
    for (&r, &b) in returns.iter().zip(benchmark) {
        sum += adjust(r) - beta * adjust(b);
    }
    let mean_alpha = sum / returns.len() as f64;
    Ok(AlphaBeta {
        alpha: (mean_alpha + 1.0).powf(PERIODS_PER_YEAR) - 1.0,
        beta,
    })
}

/// Pearson correlation of returns and benchmark, as numpy's `corrcoef` (clipped to [−1, 1]).
/// Undefined when either has zero variance.
pub fn correlation(returns: &[f64], benchmark: &[f64]) -> Result<f64> {
    const STAT: &str = "correlation";
    check_pair(STAT, returns, benchmark, 2)?;
    let (mx, my) = (mean(returns), mean(benchmark));
    let (mut sxx, mut syy, mut sxy) = (0.0, 0.0, 0.0);
    for (&x, &y) in returns.iter().zip(benchmark) {
        let (dx, dy) = (x - mx, y - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(Error::Undefined {
            stat: STAT,
            reason: "a series has zero variance",
        });
    }
    let dof = (returns.len() - 1) as f64;
    let r = (sxy / dof) / (sxx / dof).sqrt() / (syy / dof).sqrt();
    Ok(r.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: [f64; 5] = [0.01, -0.02, 0.015, 0.003, -0.007];

    #[test]
    fn a_levered_copy_has_that_beta_and_full_correlation() {
        let r: Vec<f64> = B.iter().map(|b| 2.0 * b).collect();
        assert!((beta(&r, &B).unwrap() - 2.0).abs() < 1e-12);
        assert!((correlation(&r, &B).unwrap() - 1.0).abs() < 1e-12);
        let inverse: Vec<f64> = B.iter().map(|b| -b).collect();
        assert!((correlation(&inverse, &B).unwrap() + 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_constant_daily_edge_compounds_into_alpha() {
        let r: Vec<f64> = B.iter().map(|b| b + 0.0001).collect();
        let ab = alpha_beta(&r, &B, 0.0).unwrap();
        assert!((ab.beta - 1.0).abs() < 1e-12);
        assert!(
            (ab.alpha - (1.0001f64.powi(252) - 1.0)).abs() < 1e-9,
            "{}",
            ab.alpha
        );
    }

    #[test]
    fn a_flat_benchmark_has_no_beta() {
        assert!(matches!(
            beta(&B, &[0.001; 5]),
            Err(Error::Undefined { .. })
        ));
        assert!(matches!(
            correlation(&B, &[0.0; 5]),
            Err(Error::Undefined { .. })
        ));
    }

    #[test]
    fn misaligned_series_are_rejected() {
        assert!(matches!(
            alpha_beta(&B, &B[..4], 0.0),
            Err(Error::LengthMismatch {
                returns: 5,
                benchmark: 4,
                ..
            })
        ));
    }
}
