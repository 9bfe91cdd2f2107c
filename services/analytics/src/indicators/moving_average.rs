//! Moving averages: SMA, EMA, WMA, DEMA, TEMA, and [`MaType`] for indicators that smooth with a
//! configurable average (Bollinger bands, stochastic).
//!
//! The `*_core` functions return the compact result (from the first defined bar on) and assume
//! validated input; the public functions validate and align.

use super::{Result, align, check_enough, check_finite, check_period};

/// The moving average an indicator smooths with; TA-Lib's `MAType` codes 0..=4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaType {
    /// Simple moving average (TA-Lib code 0).
    Sma,
    /// Exponential moving average seeded with an SMA (code 1).
    Ema,
    /// Linearly weighted moving average (code 2).
    Wma,
    /// Double exponential moving average (code 3).
    Dema,
    /// Triple exponential moving average (code 4).
    Tema,
}

impl MaType {
    /// The names [`MaType::parse`] accepts.
    pub const NAMES: &'static [&'static str] = &["sma", "ema", "wma", "dema", "tema"];

    /// The lower-case name, as accepted by [`MaType::parse`].
    pub fn name(self) -> &'static str {
        match self {
            MaType::Sma => "sma",
            MaType::Ema => "ema",
            MaType::Wma => "wma",
            MaType::Dema => "dema",
            MaType::Tema => "tema",
        }
    }

    /// Parses a name (case-insensitive) or a TA-Lib code ("0".."4"); `None` when neither.
    pub fn parse(text: &str) -> Option<MaType> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "sma" | "0" => Some(MaType::Sma),
            "ema" | "1" => Some(MaType::Ema),
            "wma" | "2" => Some(MaType::Wma),
            "dema" | "3" => Some(MaType::Dema),
            "tema" | "4" => Some(MaType::Tema),
            _ => None,
        }
    }

    /// The TA-Lib code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Bars consumed before the first value, as TA-Lib's `TA_MA_Lookback`: a period of 1 is
    /// the identity for every type.
    pub fn lookback(self, period: usize) -> usize {
        if period <= 1 {
            return 0;
        }
        match self {
            MaType::Sma | MaType::Ema | MaType::Wma => period - 1,
            MaType::Dema => 2 * (period - 1),
            MaType::Tema => 3 * (period - 1),
        }
    }
}

/// Simple moving average; lookback `period - 1`.
pub fn sma(values: &[f64], period: usize) -> Result<Vec<f64>> {
    simple_input("sma", values, period, 1, period.saturating_sub(1))?;
    Ok(align(values.len(), period - 1, &sma_core(values, period)))
}

/// Exponential moving average with `k = 2 / (period + 1)`, seeded with the SMA of the first
/// `period` values (TA-Lib's default compatibility); lookback `period - 1`.
pub fn ema(values: &[f64], period: usize) -> Result<Vec<f64>> {
    simple_input("ema", values, period, 1, period.saturating_sub(1))?;
    Ok(align(values.len(), period - 1, &ema_core(values, period)))
}

/// Linearly weighted moving average (weights 1..=period, newest heaviest); lookback
/// `period - 1`.
pub fn wma(values: &[f64], period: usize) -> Result<Vec<f64>> {
    simple_input("wma", values, period, 1, period.saturating_sub(1))?;
    Ok(align(values.len(), period - 1, &wma_core(values, period)))
}

/// Double EMA, `2·EMA − EMA(EMA)`; lookback `2·(period − 1)`.
pub fn dema(values: &[f64], period: usize) -> Result<Vec<f64>> {
    let lookback = 2 * period.saturating_sub(1);
    simple_input("dema", values, period, 1, lookback)?;
    Ok(align(values.len(), lookback, &dema_core(values, period)))
}

/// Triple EMA, `3·EMA − 3·EMA(EMA) + EMA(EMA(EMA))`; lookback `3·(period − 1)`.
pub fn tema(values: &[f64], period: usize) -> Result<Vec<f64>> {
    let lookback = 3 * period.saturating_sub(1);
    simple_input("tema", values, period, 1, lookback)?;
    Ok(align(values.len(), lookback, &tema_core(values, period)))
}

/// The checks every single-input average shares.
fn simple_input(
    name: &'static str,
    values: &[f64],
    period: usize,
    min_period: usize,
    lookback: usize,
) -> Result<()> {
    check_period(name, "period", period, min_period)?;
    check_finite(name, "values", values)?;
    check_enough(name, lookback, values.len())
}

// === cores (compact output, validated input) ===

/// TA-Lib's running-total SMA: the total gains the newest value before the division and loses
/// the oldest after it, exactly as `TA_INT_SMA` does.
pub(crate) fn sma_core(x: &[f64], period: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() + 1 - period);
    let mut total = 0.0;
    for &v in &x[..period - 1] {
        total += v;
    }
    let divisor = period as f64;
    for (i, &v) in x.iter().enumerate().skip(period - 1) {
        total += v;
        let sum = total;
        total -= x[i + 1 - period];
        out.push(sum / divisor);
    }
    out
}

/// TA-Lib's EMA: seed with the SMA of the first `period` values (summed from 0.0 in order),
/// then `prev = (x − prev)·k + prev` for every later value, the multiply-add **fused** (one
/// rounding) as TA-Lib 0.8's compiled code does it. `mul_add` is correctly rounded on every
/// CPU (hardware FMA or libm's exact fallback), so the result does not depend on the machine.
pub(crate) fn ema_core(x: &[f64], period: usize) -> Vec<f64> {
    ema_with_k(x, period, 2.0 / (period as f64 + 1.0))
}

pub(crate) fn ema_with_k(x: &[f64], period: usize, k: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() + 1 - period);
    let mut sum = 0.0;
    for &v in &x[..period] {
        sum += v;
    }
    let mut prev = sum / period as f64;
    out.push(prev);
    for &v in &x[period..] {
        prev = (v - prev).mul_add(k, prev);
        out.push(prev);
    }
    out
}

/// TA-Lib's WMA: a weighted sum and a plain sum updated incrementally (add `x·period`, then
/// subtract the plain sum to age every weight by one), divided by `period·(period+1)/2`.
/// Running sums drift, so TA-Lib 0.8 recomputes both from scratch on every `8·period`-th
/// output; the same schedule is kept here, which makes the results identical.
pub(crate) fn wma_core(x: &[f64], period: usize) -> Vec<f64> {
    if period == 1 {
        return x.to_vec();
    }
    let resync_every = 8 * period;
    let p = period as f64;
    let divider = p * (period + 1) as f64 * 0.5;
    let mut out = Vec::with_capacity(x.len() + 1 - period);
    let mut plain = 0.0;
    let mut weighted = 0.0;
    for (i, &v) in x[..period - 1].iter().enumerate() {
        plain += v;
        weighted += (i + 1) as f64 * v;
    }
    let mut trailing = 0.0;
    for (k, t) in (period - 1..x.len()).enumerate() {
        let window = &x[t + 1 - period..=t];
        let sum = if (k + 1) % resync_every == 0 {
            plain = 0.0;
            let mut sum = 0.0;
            for (i, &v) in window.iter().enumerate() {
                plain += v;
                sum += (i + 1) as f64 * v;
            }
            sum
        } else {
            let v = x[t];
            plain += v;
            plain -= trailing;
            v * p + weighted
        };
        out.push(sum / divider);
        weighted = sum - plain;
        trailing = window[0];
    }
    out
}

/// TA-Lib's DEMA: EMA of the input, EMA of that, then `2.0 * e1 - e2` on the common bars.
pub(crate) fn dema_core(x: &[f64], period: usize) -> Vec<f64> {
    let e1 = ema_core(x, period);
    let e2 = ema_core(&e1, period);
    let offset = period - 1;
    e2.iter()
        .enumerate()
        .map(|(i, &b)| (2.0 * e1[i + offset]) - b)
        .collect()
}

/// TA-Lib's TEMA: three chained EMAs, `e3 + ((3.0 * e1) - (3.0 * e2))` on the common bars.
pub(crate) fn tema_core(x: &[f64], period: usize) -> Vec<f64> {
    let e1 = ema_core(x, period);
    let e2 = ema_core(&e1, period);
    let e3 = ema_core(&e2, period);
    let offset = period - 1;
    e3.iter()
        .enumerate()
        .map(|(i, &c)| c + ((3.0 * e1[i + 2 * offset]) - (3.0 * e2[i + offset])))
        .collect()
}

/// The average of `ma_type` over `x` (compact), as TA-Lib's `TA_MA`: a period of 1 copies the
/// input for every type.
pub(crate) fn ma_core(x: &[f64], period: usize, ma_type: MaType) -> Vec<f64> {
    if period == 1 {
        return x.to_vec();
    }
    match ma_type {
        MaType::Sma => sma_core(x, period),
        MaType::Ema => ema_core(x, period),
        MaType::Wma => wma_core(x, period),
        MaType::Dema => dema_core(x, period),
        MaType::Tema => tema_core(x, period),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Error;

    const X: [f64; 6] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];

    #[test]
    fn sma_averages_each_window() {
        let out = sma(&X, 3).unwrap();
        assert!(out[..2].iter().all(|v| v.is_nan()));
        assert_eq!(&out[2..], &[2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn ema_is_seeded_with_the_sma_of_its_first_period() {
        let out = ema(&X, 3).unwrap();
        assert_eq!(out[2], 2.0);
        assert_eq!(out[3], (4.0 - 2.0) * 0.5 + 2.0);
    }

    #[test]
    fn wma_weights_the_newest_value_most() {
        let out = wma(&X, 3).unwrap();
        assert_eq!(out[2], (1.0 + 2.0 * 2.0 + 3.0 * 3.0) / 6.0);
        assert_eq!(out[5], (4.0 + 2.0 * 5.0 + 3.0 * 6.0) / 6.0);
    }

    #[test]
    fn dema_and_tema_follow_a_linear_trend_exactly() {
        let line: Vec<f64> = (0..40).map(f64::from).collect();
        let d = dema(&line, 5).unwrap();
        let t = tema(&line, 5).unwrap();
        assert!(d[..8].iter().all(|v| v.is_nan()) && !d[8].is_nan());
        assert!(t[..12].iter().all(|v| v.is_nan()) && !t[12].is_nan());
        // A DEMA/TEMA has no lag on a straight line once seeded far enough back.
        assert!((d[39] - 39.0).abs() < 1e-3, "{}", d[39]);
        assert!((t[39] - 39.0).abs() < 1e-6, "{}", t[39]);
    }

    #[test]
    fn a_period_of_zero_is_rejected() {
        for f in [sma, ema, wma, dema, tema] {
            assert!(matches!(
                f(&X, 0),
                Err(Error::InvalidParameter {
                    parameter: "period",
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_window_longer_than_the_data_is_rejected() {
        assert_eq!(
            sma(&X, 7),
            Err(Error::NotEnoughData {
                indicator: "sma",
                needed: 7,
                got: 6
            })
        );
        assert!(matches!(
            tema(&X, 3),
            Err(Error::NotEnoughData { needed: 7, .. })
        ));
    }

    #[test]
    fn nan_input_is_rejected_with_its_position() {
        let mut x = X;
        x[4] = f64::NAN;
        assert_eq!(
            ema(&x, 2),
            Err(Error::NonFinite {
                indicator: "ema",
                input: "values",
                index: 4
            })
        );
    }

    #[test]
    fn ma_type_parses_names_and_talib_codes() {
        assert_eq!(MaType::parse("EMA"), Some(MaType::Ema));
        assert_eq!(MaType::parse("4"), Some(MaType::Tema));
        assert_eq!(MaType::parse("kama"), None);
        assert_eq!(MaType::Dema.lookback(10), 18);
        assert_eq!(MaType::Tema.lookback(1), 0);
    }
}
