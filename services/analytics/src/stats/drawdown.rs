//! Maximum drawdown and how long it lasted.

use super::{Result, check_returns};

/// The deepest peak-to-trough fall of the compounded returns.
///
/// Positions index the equity curve, not the returns: position 0 is the start (before the
/// first return) and position `k` the value after `k` returns, so with `n` returns they run
/// `0..=n` and position `k` is the close of bar `k` when the returns come from `n + 1` closes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drawdown {
    /// The fall as a fraction of the peak, ≤ 0 (−0.57 is a 57% drawdown); empyrical's
    /// `max_drawdown`.
    pub depth: f64,
    /// The last position at or before the trough where the curve stood at its high.
    pub peak: usize,
    /// The position of the lowest point (the first, if several are equally deep).
    pub trough: usize,
    /// The first position after the trough back at or above the peak; `None` if the curve
    /// never recovered.
    pub recovery: Option<usize>,
    /// Bars from the peak to the recovery, or to the last position (`n`) without one.
    pub duration: usize,
}

/// The maximum drawdown with its peak, trough, recovery and duration. Returns that never fall
/// give a depth of 0 with peak = trough = recovery = 0 and a duration of 0.
///
/// The depth is computed as empyrical does: a curve starting at 100 and compounded
/// sequentially, each drawdown `(value − running max) / running max`.
pub fn max_drawdown(returns: &[f64]) -> Result<Drawdown> {
    check_returns("max_drawdown", returns, 1)?;
    let n = returns.len();
    let mut curve = Vec::with_capacity(n + 1);
    curve.push(100.0);
    let mut product = 1.0;
    for &r in returns {
        product *= r + 1.0;
        curve.push(product * 100.0);
    }

    let mut running_max = curve[0];
    let mut depth = 0.0;
    let mut trough = 0;
    let mut peak = 0;
    let mut peak_so_far = 0;
    for (k, &v) in curve.iter().enumerate().skip(1) {
        if v >= running_max {
            running_max = v;
            peak_so_far = k;
        }
        let dd = (v - running_max) / running_max;
        if dd < depth {
            depth = dd;
            trough = k;
            peak = peak_so_far;
        }
    }
    if trough == 0 {
        return Ok(Drawdown {
            depth: 0.0,
            peak: 0,
            trough: 0,
            recovery: Some(0),
            duration: 0,
        });
    }
    let recovery = (trough + 1..=n).find(|&k| curve[k] >= curve[peak]);
    Ok(Drawdown {
        depth,
        peak,
        trough,
        recovery,
        duration: recovery.unwrap_or(n) - peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawdown_runs_from_peak_through_trough_to_recovery() {
        // 100 → 110 → 88 → 99 → 110 → 121
        let r = [0.1, -0.2, 0.125, 1.0 / 9.0, 0.1];
        let d = max_drawdown(&r).unwrap();
        assert!((d.depth + 0.2).abs() < 1e-12, "{}", d.depth);
        assert_eq!((d.peak, d.trough), (1, 2));
        assert_eq!(d.recovery, Some(4));
        assert_eq!(d.duration, 3);
    }

    #[test]
    fn an_unrecovered_drawdown_lasts_to_the_end() {
        let d = max_drawdown(&[0.05, -0.1, 0.01, -0.02]).unwrap();
        assert_eq!((d.peak, d.trough, d.recovery), (1, 4, None));
        assert_eq!(d.duration, 3);
    }

    #[test]
    fn a_fall_from_the_start_peaks_at_position_zero() {
        let d = max_drawdown(&[-0.1, 0.2]).unwrap();
        assert_eq!(
            (d.peak, d.trough, d.recovery, d.duration),
            (0, 1, Some(2), 2)
        );
    }

    #[test]
    fn rising_returns_have_no_drawdown() {
        let d = max_drawdown(&[0.01, 0.0, 0.02]).unwrap();
        assert_eq!(d.depth, 0.0);
        assert_eq!(d.duration, 0);
    }
}
