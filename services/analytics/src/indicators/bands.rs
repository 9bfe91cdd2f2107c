//! Bollinger bands.

use super::moving_average::{MaType, ma_core};
use super::{Error, Result, align, check_enough, check_finite, check_period, is_zero_or_neg};

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
/// The deviation is computed two-pass per window (mean, then squared deviations from it).
/// TA-Lib's published source uses running sums of `x` and `x²` (`E[x²] − E[x]²`), which
/// cancels catastrophically on prices (squares near 10⁶ for a variance near 10²) and drifts
/// with the running sums; TA-Lib 0.8's compiled library instead re-bases shifted sums, and its
/// bands agree with the two-pass ones to ~3e-14 where the running-sum version is off by ~1e-12.
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
    // TA-Lib distinguishes these cases to skip multiplications by 1; the products differ in
    // the last bit otherwise, so the same cases are kept.
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
            (mid + sd * nbdev_up, mid - sd)
        } else {
            (mid + sd * nbdev_up, mid - sd * nbdev_dn)
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

/// Population standard deviation of every `period`-window of `x` (compact), two-pass: the
/// window's mean summed oldest first, then the squared deviations from it. A variance below
/// TA-Lib's epsilon counts as zero, as in TA-Lib.
fn stddev(x: &[f64], period: usize) -> Vec<f64> {
    let p = period as f64;
    x.windows(period)
        .map(|w| {
            let mut sum = 0.0;
            for &v in w {
                sum += v;
            }
            let mean = sum / p;
            let mut squares = 0.0;
            for &v in w {
                let d = v - mean;
                squares += d * d;
            }
            let var = squares / p;
            if is_zero_or_neg(var) { 0.0 } else { var.sqrt() }
        })
        .collect()
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
