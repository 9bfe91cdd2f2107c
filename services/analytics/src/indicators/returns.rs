//! Simple and log returns.

use super::{Error, Result, align, check_enough, check_finite, check_period};

/// Simple returns over `period` bars, `(x[t] − x[t−period]) / x[t−period]`, as TA-Lib's `ROCP`
/// (0 where the earlier value is 0). Lookback `period`.
pub fn returns(values: &[f64], period: usize) -> Result<Vec<f64>> {
    const NAME: &str = "returns";
    check_period(NAME, "period", period, 1)?;
    check_finite(NAME, "values", values)?;
    check_enough(NAME, period, values.len())?;
    let out: Vec<f64> = values
        .iter()
        .zip(&values[period..])
        .map(|(&old, &new)| if old != 0.0 { (new - old) / old } else { 0.0 })
        .collect();
    Ok(align(values.len(), period, &out))
}

/// Log returns over `period` bars, `ln(x[t] / x[t−period])` (TA-Lib's `ROCR`, then the natural
/// log); every value must be positive. Lookback `period`.
pub fn log_returns(values: &[f64], period: usize) -> Result<Vec<f64>> {
    const NAME: &str = "log_returns";
    check_period(NAME, "period", period, 1)?;
    check_finite(NAME, "values", values)?;
    if let Some(index) = values.iter().position(|&v| v <= 0.0) {
        return Err(Error::NonPositive {
            indicator: NAME,
            input: "values",
            index,
            value: values[index],
        });
    }
    check_enough(NAME, period, values.len())?;
    let out: Vec<f64> = values
        .iter()
        .zip(&values[period..])
        .map(|(&old, &new)| (new / old).ln())
        .collect();
    Ok(align(values.len(), period, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_compare_with_the_bar_period_back() {
        let r = returns(&[100.0, 110.0, 99.0], 1).unwrap();
        assert!(r[0].is_nan());
        assert_eq!(r[1], 0.1);
        assert_eq!(r[2], (99.0 - 110.0) / 110.0);
        assert_eq!(returns(&[100.0, 110.0, 121.0], 2).unwrap()[2], 0.21);
    }

    #[test]
    fn log_returns_add_up() {
        let r = log_returns(&[100.0, 200.0, 400.0], 1).unwrap();
        assert_eq!(r[1], std::f64::consts::LN_2);
        assert_eq!(r[2], std::f64::consts::LN_2);
    }

    #[test]
    fn log_returns_reject_non_positive_prices() {
        assert!(matches!(
            log_returns(&[1.0, 0.0, 2.0], 1),
            Err(Error::NonPositive { index: 1, .. })
        ));
    }
}
