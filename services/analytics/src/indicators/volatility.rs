//! Volatility: true range, ATR, NATR.

use super::momentum::hlc;
use super::{Result, align, check_enough, check_period, is_zero};

/// TA-Lib's true range of one bar: the largest of `high − low`, `|previous close − high|` and
/// `|low − previous close|`, compared in that order.
pub(crate) fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut greatest = high - low;
    let up = (prev_close - high).abs();
    if up > greatest {
        greatest = up;
    }
    let down = (low - prev_close).abs();
    if down > greatest {
        greatest = down;
    }
    greatest
}

/// Average true range with Wilder's smoothing: the first value is the mean of the first
/// `period` true ranges (bars 1..=period); later ones `w·prev + (1 − w)·tr` with
/// `w = (period − 1)/period`, computed as TA-Lib 0.8 does: one fused multiply-add,
/// `fma(w, prev, tr·(1 − w))`. Lookback `period`; a period of 1 is the true range itself.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>> {
    check_period("atr", "period", period, 1)?;
    wilder_atr("atr", high, low, close, period, |atr, _| atr)
}

/// Normalised ATR: `(ATR / close) · 100` (0 for a zero close). Lookback `period`.
///
/// The period must be at least 2: TA-Lib 0.8 returns the raw, un-normalised true range for a
/// period of 1, which would silently differ from the definition.
pub fn natr(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Result<Vec<f64>> {
    check_period("natr", "period", period, 2)?;
    wilder_atr("natr", high, low, close, period, |atr, close| {
        if is_zero(close) {
            0.0
        } else {
            (atr / close) * 100.0
        }
    })
}

fn wilder_atr(
    name: &'static str,
    high: &[f64],
    low: &[f64],
    close: &[f64],
    period: usize,
    finish: impl Fn(f64, f64) -> f64,
) -> Result<Vec<f64>> {
    hlc(name, high, low, close)?;
    check_enough(name, period, close.len())?;

    // The true range of every bar after the first (it needs the previous close).
    let trs: Vec<f64> = (1..close.len())
        .map(|i| true_range(high[i], low[i], close[i - 1]))
        .collect();
    let closes = &close[1..];
    let mut out = Vec::with_capacity(close.len() - period);
    if period == 1 {
        out.extend(trs.iter().zip(closes).map(|(&tr, &c)| finish(tr, c)));
        return Ok(align(close.len(), period, &out));
    }
    let p = period as f64;
    let w = (period - 1) as f64 / p;
    let u = 1.0 - w;
    let mut sum = 0.0;
    for &tr in &trs[..period] {
        sum += tr;
    }
    let mut atr = sum / p;
    out.push(finish(atr, closes[period - 1]));
    for (&tr, &c) in trs[period..].iter().zip(&closes[period..]) {
        atr = w.mul_add(atr, tr * u);
        out.push(finish(atr, c));
    }
    Ok(align(close.len(), period, &out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Error;

    #[test]
    fn true_range_takes_gaps_into_account() {
        assert_eq!(true_range(12.0, 10.0, 11.0), 2.0);
        assert_eq!(true_range(12.0, 10.0, 5.0), 7.0);
        assert_eq!(true_range(12.0, 10.0, 15.0), 5.0);
    }

    #[test]
    fn atr_of_constant_ranges_is_that_range() {
        let close = [10.0; 20];
        let high = [11.0; 20];
        let low = [9.0; 20];
        let a = atr(&high, &low, &close, 14).unwrap();
        assert!(a[13].is_nan());
        assert_eq!(a[14], 2.0);
        assert_eq!(a[19], 2.0);
        assert_eq!(natr(&high, &low, &close, 14).unwrap()[19], 20.0);
        assert!(matches!(
            natr(&high, &low, &close, 1),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn atr_rejects_a_zero_period_and_short_data() {
        let x = [1.0; 14];
        assert!(matches!(
            atr(&x, &x, &x, 0),
            Err(Error::InvalidParameter { .. })
        ));
        assert!(matches!(
            atr(&x, &x, &x, 14),
            Err(Error::NotEnoughData {
                needed: 15,
                got: 14,
                ..
            })
        ));
    }
}
