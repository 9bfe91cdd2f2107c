//! Bollinger bands.

use super::moving_average::{MaType, ma_core};
use super::{Error, Result, align, check_enough, check_finite, check_period};

/// Bollinger bands, each aligned to the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Bands {
    /// `middle + nbdev_up · σ`.
    pub upper: Vec<f64>,
    /// The moving average.
    pub middle: Vec<f64>,
    /// `middle − nbdev_dn · σ`.
    pub lower: Vec<f64>,
}

/// Bollinger bands as TA-Lib's `BBANDS`: a `ma_type` average of `period` values, and the
/// **population** standard deviation (divide by `period`) of the same window scaled by
/// `nbdev_up` / `nbdev_dn`. Lookback: the average's lookback (at least `period − 1`).
///
/// The deviation follows TA-Lib 0.8.1's shifted-sum algorithm (see `stddev` below), not the
/// `E[x²] − E[x]²` running sums of TA-Lib's older published source, which cancel on prices
/// (squares near 10⁶ for a variance near 10²) and are off by ~1e-12 relative.
pub fn bbands(
    values: &[f64],
    period: usize,
    nbdev_up: f64,
    nbdev_dn: f64,
    ma_type: MaType,
) -> Result<Bands> {
    const NAME: &str = "bbands";
    check_period(NAME, "period", period, 2)?;
    for (parameter, v) in [("nbdev_up", nbdev_up), ("nbdev_dn", nbdev_dn)] {
        if !v.is_finite() || v < 0.0 {
            return Err(Error::InvalidParameter {
                indicator: NAME,
                parameter,
                reason: format!("must be a finite number ≥ 0, got {v}"),
            });
        }
    }
    check_finite(NAME, "values", values)?;
    let lookback = lookback(period, ma_type);
    check_enough(NAME, lookback, values.len())?;

    let ma_full = ma_core(values, period, ma_type);
    // The averages with a longer lookback than the deviation (DEMA, TEMA) start later.
    let ma = &ma_full[ma_full.len() + lookback - values.len()..];
    let std = stddev(&values[lookback + 1 - period..], period);

    let n = ma.len();
    let mut upper = Vec::with_capacity(n);
    let mut lower = Vec::with_capacity(n);
    // TA-Lib distinguishes these cases to skip multiplications by 1, and its compiled code
    // fuses the upper band's own multiply-add (`fma(σ, nbdev_up, middle)`) but not the lower
    // band's nor the shared one; the products round differently otherwise, so the same cases
    // are kept.
    for (&mid, &sd) in ma.iter().zip(&std) {
        let (up, dn) = if nbdev_up == nbdev_dn {
            if nbdev_up == 1.0 {
                (mid + sd, mid - sd)
            } else {
                let d = sd * nbdev_up;
                (mid + d, mid - d)
            }
        } else if nbdev_up == 1.0 {
            (mid + sd, mid - sd * nbdev_dn)
        } else if nbdev_dn == 1.0 {
            (sd.mul_add(nbdev_up, mid), mid - sd)
        } else {
            (sd.mul_add(nbdev_up, mid), mid - sd * nbdev_dn)
        };
        upper.push(up);
        lower.push(dn);
    }
    let len = values.len();
    Ok(Bands {
        upper: align(len, lookback, &upper),
        middle: align(len, lookback, ma),
        lower: align(len, lookback, &lower),
    })
}

/// `BBANDS`' lookback: the average's, which is never shorter than the deviation's.
pub(crate) fn lookback(period: usize, ma_type: MaType) -> usize {
    ma_type.lookback(period).max(period - 1)
}

/// Population standard deviation of every `period`-window of `x` (compact), as TA-Lib 0.8.1
/// computes it (read from its compiled `BBANDS`): running sums of `x − K` and `(x − K)²` for a
/// shift `K` (initially the first value), so the variance `E[(x−K)²] − E[x−K]²` does not cancel
/// like the textbook `E[x²] − E[x]²` on prices. The shift is re-based to the window's mean,
/// and both sums recomputed, whenever cancellation shows (the variance below 1e-6 of
/// `E[(x−K)²]`, or a leaving value dwarfing the remaining sum) and at least every
/// `32·period` bars; a re-based variance below 1e-12 of `E[(x−K)²]` counts as zero.
fn stddev(x: &[f64], period: usize) -> Vec<f64> {
    let inv = 1.0 / period as f64;
    let rebase_every = 32 * period;
    let mut shift = x[0];
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in &x[..period - 1] {
        let d = v - shift;
        s1 += d;
        s2 += d * d;
    }
    let mut countdown = rebase_every;
    let mut out = Vec::with_capacity(x.len() + 1 - period);
    for t in period - 1..x.len() {
        let start = t + 1 - period;
        let d = x[t] - shift;
        s1 += d;
        s2 += d * d;
        let mean = inv * s1;
        let var = inv * s2 - mean * mean;
        let old = x[start] - shift;
        let old2 = old * old;
        s2 -= old2;
        let rebase = (inv * s2) * 1e-6 > var || old2 > s2 * 1e6 || {
            countdown -= 1;
            countdown == 0
        };
        let sd = if rebase {
            let window = &x[start..=t];
            let mut sum = 0.0;
            for &v in window {
                sum += v;
            }
            shift = sum * inv;
            (s1, s2) = (0.0, 0.0);
            for &v in window {
                let d = v - shift;
                s1 += d;
                s2 += d * d;
            }
            let mean = inv * s1;
            let e2 = inv * s2;
            let var = e2 - mean * mean;
            let old = x[start] - shift;
            s1 -= old;
            s2 -= old * old;
            countdown = rebase_every;
            if e2 * 1e-12 > var || var == 0.0 {
                0.0
            } else {
                var.sqrt()
            }
        } else {
            s1 -= old;
            if var == 0.0 { 0.0 } else { var.sqrt() }
        };
        out.push(sd);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_sit_population_deviations_around_the_sma() {
        let x = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        // Mean 5, population standard deviation exactly 2 over the whole window.
        let b = bbands(&x, 8, 2.0, 1.0, MaType::Sma).unwrap();
        assert_eq!(b.middle[7], 5.0);
        assert_eq!(b.upper[7], 9.0);
        assert_eq!(b.lower[7], 3.0);
        assert!(b.upper[6].is_nan());
    }

    #[test]
    fn a_flat_series_has_zero_width() {
        let b = bbands(&[3.0; 10], 5, 2.0, 2.0, MaType::Ema).unwrap();
        assert_eq!(b.upper[9], 3.0);
        assert_eq!(b.lower[9], 3.0);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let x = [1.0; 30];
        assert!(matches!(
            bbands(&x, 1, 2.0, 2.0, MaType::Sma),
            Err(Error::InvalidParameter {
                parameter: "period",
                ..
            })
        ));
        assert!(matches!(
            bbands(&x, 5, f64::NAN, 2.0, MaType::Sma),
            Err(Error::InvalidParameter {
                parameter: "nbdev_up",
                ..
            })
        ));
        assert!(matches!(
            bbands(&x, 5, 2.0, -1.0, MaType::Sma),
            Err(Error::InvalidParameter {
                parameter: "nbdev_dn",
                ..
            })
        ));
        // A TEMA of 11 needs 31 bars.
        assert!(matches!(
            bbands(&x, 11, 2.0, 2.0, MaType::Tema),
            Err(Error::NotEnoughData {
                needed: 31,
                got: 30,
                ..
            })
        ));
    }
}
