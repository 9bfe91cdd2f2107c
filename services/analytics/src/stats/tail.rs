//! Tail risk: historical value at risk and conditional value at risk.

use super::{Error, Result, check_returns};

fn check_cutoff(stat: &'static str, cutoff: f64) -> Result<()> {
    if !(cutoff > 0.0 && cutoff < 1.0) {
        return Err(Error::InvalidParameter {
            stat,
            parameter: "cutoff",
            reason: format!("must be strictly between 0 and 1, got {cutoff}"),
        });
    }
    Ok(())
}

fn sorted(returns: &[f64]) -> Vec<f64> {
    let mut v = returns.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// Historical value at risk: the `cutoff` quantile of the returns (e.g. 0.05 for 5%), with
/// numpy's default linear interpolation between order statistics (empyrical's
/// `value_at_risk`). A return, negative for a loss.
pub fn value_at_risk(returns: &[f64], cutoff: f64) -> Result<f64> {
    const STAT: &str = "value_at_risk";
    check_cutoff(STAT, cutoff)?;
    check_returns(STAT, returns, 1)?;
    let x = sorted(returns);
    // empyrical passes `100 * cutoff` to `np.percentile`, which divides by 100 again.
    let q = (100.0 * cutoff) / 100.0;
    let virtual_index = (x.len() - 1) as f64 * q;
    let below = virtual_index.floor();
    let lo = below as usize;
    let hi = (lo + 1).min(x.len() - 1);
    let gamma = virtual_index - below;
    let (a, b) = (x[lo], x[hi]);
    // numpy's `_lerp`, which interpolates from the nearer end for accuracy.
    let diff = b - a;
    Ok(if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    })
}

/// Conditional value at risk (expected shortfall): the mean of the worst
/// `⌊(n − 1)·cutoff⌋ + 1` returns, as empyrical's `conditional_value_at_risk`.
pub fn conditional_value_at_risk(returns: &[f64], cutoff: f64) -> Result<f64> {
    const STAT: &str = "conditional_value_at_risk";
    check_cutoff(STAT, cutoff)?;
    check_returns(STAT, returns, 1)?;
    let x = sorted(returns);
    let count = ((x.len() - 1) as f64 * cutoff).floor() as usize + 1;
    let mut sum = 0.0;
    for &v in &x[..count] {
        sum += v;
    }
    Ok(sum / count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hundred() -> Vec<f64> {
        // −0.050, −0.049, ..., 0.049, shuffled by a stride so sorting matters.
        (0..100)
            .map(|i| f64::from((i * 37) % 100 - 50) / 1000.0)
            .collect()
    }

    #[test]
    fn var_interpolates_between_order_statistics() {
        // (100 − 1) · 0.05 = 4.95 → between the 5th and 6th smallest.
        let var = value_at_risk(&hundred(), 0.05).unwrap();
        assert!((var - (-0.046 + 0.95 * 0.001)).abs() < 1e-15, "{var}");
    }

    #[test]
    fn cvar_averages_the_worst_tail() {
        // ⌊99 · 0.05⌋ + 1 = 5 worst returns: −0.050..−0.046.
        let cvar = conditional_value_at_risk(&hundred(), 0.05).unwrap();
        assert!((cvar + 0.048).abs() < 1e-15, "{cvar}");
        assert!(cvar <= value_at_risk(&hundred(), 0.05).unwrap());
    }

    #[test]
    fn the_cutoff_must_be_a_probability() {
        for cutoff in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(matches!(
                value_at_risk(&hundred(), cutoff),
                Err(Error::InvalidParameter {
                    parameter: "cutoff",
                    ..
                })
            ));
            assert!(conditional_value_at_risk(&hundred(), cutoff).is_err());
        }
    }
}
