//! Volume: on-balance volume.

use super::{Result, check_enough, check_finite, check_len};

/// On-balance volume: starts at the first bar's volume and adds (subtracts) each later bar's
/// volume when its close is above (below) the previous close. Lookback 0.
pub fn obv(close: &[f64], volume: &[f64]) -> Result<Vec<f64>> {
    const NAME: &str = "obv";
    check_len(NAME, "volume", close.len(), volume)?;
    check_finite(NAME, "close", close)?;
    check_finite(NAME, "volume", volume)?;
    check_enough(NAME, 0, close.len())?;

    let mut out = Vec::with_capacity(close.len());
    let mut total = volume[0];
    let mut prev = close[0];
    out.push(total);
    for (&c, &v) in close.iter().zip(volume).skip(1) {
        if c > prev {
            total += v;
        } else if c < prev {
            total -= v;
        }
        out.push(total);
        prev = c;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indicators::Error;

    #[test]
    fn obv_adds_on_up_closes_and_subtracts_on_down_closes() {
        let close = [10.0, 11.0, 11.0, 9.0];
        let volume = [100.0, 20.0, 30.0, 50.0];
        assert_eq!(
            obv(&close, &volume).unwrap(),
            vec![100.0, 120.0, 120.0, 70.0]
        );
    }

    #[test]
    fn obv_of_nothing_is_an_error() {
        assert!(matches!(
            obv(&[], &[]),
            Err(Error::NotEnoughData {
                needed: 1,
                got: 0,
                ..
            })
        ));
    }
}
