//! Return, volatility and risk-adjusted ratios.

use super::{
    Error, PERIODS_PER_YEAR, Result, check_rate, check_returns, max_drawdown, mean_shifted,
    std_shifted,
};

/// Compound annual growth rate: `(∏(1 + r))^(1/years) − 1` with `years = n / 252`
/// (empyrical's `annual_return`). Undefined when the growth factor is negative (a return
/// below −100%).
pub fn annual_return(returns: &[f64]) -> Result<f64> {
    const STAT: &str = "annual_return";
    check_returns(STAT, returns, 1)?;
    let years = returns.len() as f64 / PERIODS_PER_YEAR;
    let mut ending = 1.0;
    for &r in returns {
        ending *= r + 1.0;
    }
    if ending < 0.0 {
        return Err(Error::Undefined {
            stat: STAT,
            reason: "the returns compound to a negative value",
        });
    }
    Ok(ending.powf(1.0 / years) - 1.0)
}

/// Annualised volatility: the sample standard deviation of the returns × √252.
pub fn annual_volatility(returns: &[f64]) -> Result<f64> {
    check_returns("annual_volatility", returns, 2)?;
    let (sd, _) = std_shifted(returns, 0.0);
    // empyrical scales by `252 ** (1 / alpha)` with alpha = 2, a pow rather than a sqrt.
    Ok(sd * PERIODS_PER_YEAR.powf(1.0 / 2.0))
}

/// Annualised Sharpe ratio: `mean(r − rf) / sd(r − rf) · √252`, `risk_free` per period.
pub fn sharpe_ratio(returns: &[f64], risk_free: f64) -> Result<f64> {
    const STAT: &str = "sharpe_ratio";
    check_rate(STAT, "risk_free", risk_free)?;
    check_returns(STAT, returns, 2)?;
    sharpe_of(STAT, returns, risk_free)
}

pub(crate) fn sharpe_of(stat: &'static str, returns: &[f64], risk_free: f64) -> Result<f64> {
    let (sd, constant) = std_shifted(returns, risk_free);
    if constant {
        return Err(Error::Undefined {
            stat,
            reason: "the returns have zero dispersion",
        });
    }
    Ok(mean_shifted(returns, risk_free) / sd * PERIODS_PER_YEAR.sqrt())
}

/// Annualised downside deviation below `required_return` (per period):
/// `√(mean(min(r − req, 0)²)) · √252`, the mean taken over **all** periods.
pub fn downside_risk(returns: &[f64], required_return: f64) -> Result<f64> {
    const STAT: &str = "downside_risk";
    check_rate(STAT, "required_return", required_return)?;
    check_returns(STAT, returns, 1)?;
    Ok(downside_of(returns, required_return))
}

fn downside_of(returns: &[f64], required_return: f64) -> f64 {
    let mut sum = 0.0;
    for &r in returns {
        let d = (r - required_return).min(0.0);
        sum += d * d;
    }
    (sum / returns.len() as f64).sqrt() * PERIODS_PER_YEAR.sqrt()
}

/// Sortino ratio: the annualised mean excess over `required_return`
/// (`mean(r − req) · 252`) divided by [`downside_risk`]. Undefined without any downside.
pub fn sortino_ratio(returns: &[f64], required_return: f64) -> Result<f64> {
    const STAT: &str = "sortino_ratio";
    check_rate(STAT, "required_return", required_return)?;
    check_returns(STAT, returns, 2)?;
    let downside = downside_of(returns, required_return);
    if downside == 0.0 {
        return Err(Error::Undefined {
            stat: STAT,
            reason: "no return falls below the required return",
        });
    }
    Ok(mean_shifted(returns, required_return) * PERIODS_PER_YEAR / downside)
}

/// Calmar ratio: [`annual_return`] / |max drawdown|. Undefined without a drawdown.
pub fn calmar_ratio(returns: &[f64]) -> Result<f64> {
    const STAT: &str = "calmar_ratio";
    check_returns(STAT, returns, 1)?;
    let depth = max_drawdown(returns)?.depth;
    if depth >= 0.0 {
        return Err(Error::Undefined {
            stat: STAT,
            reason: "the returns never draw down",
        });
    }
    let ratio = annual_return(returns)? / depth.abs();
    if ratio.is_infinite() {
        return Err(Error::Undefined {
            stat: STAT,
            reason: "the annual return is unbounded",
        });
    }
    Ok(ratio)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_of_constant_growth_annualises_to_itself() {
        let r = vec![0.001; 252];
        let cagr = annual_return(&r).unwrap();
        assert!((cagr - (1.001f64.powi(252) - 1.0)).abs() < 1e-12, "{cagr}");
        // Two years of the same growth give the same annual rate.
        let cagr2 = annual_return(&[r.clone(), r].concat()).unwrap();
        assert!((cagr2 - cagr).abs() < 1e-12);
    }

    #[test]
    fn sharpe_subtracts_the_risk_free_rate_per_period() {
        let r = [0.01, -0.005, 0.02, 0.0, 0.004];
        let plain = sharpe_ratio(&r, 0.0).unwrap();
        let excess = sharpe_ratio(&r, 0.001).unwrap();
        assert!(excess < plain);
        let shifted: Vec<f64> = r.iter().map(|v| v - 0.001).collect();
        assert!((sharpe_ratio(&shifted, 0.0).unwrap() - excess).abs() < 1e-12);
    }

    #[test]
    fn constant_returns_have_no_sharpe_ratio() {
        assert!(matches!(
            sharpe_ratio(&[0.01; 10], 0.0),
            Err(Error::Undefined { .. })
        ));
        // 0.25 sums exactly, so the deviations are exactly 0 (0.01 would leave ~1e-17).
        assert_eq!(annual_volatility(&[0.25; 10]).unwrap(), 0.0);
    }

    #[test]
    fn downside_risk_only_counts_shortfalls_but_divides_by_all_periods() {
        let r = [0.02, -0.02, 0.03, 0.01];
        let expected = (0.02f64 * 0.02 / 4.0).sqrt() * 252f64.sqrt();
        assert!((downside_risk(&r, 0.0).unwrap() - expected).abs() < 1e-15);
        assert!(matches!(
            sortino_ratio(&[0.01, 0.02], 0.0),
            Err(Error::Undefined { .. })
        ));
    }

    #[test]
    fn calmar_needs_a_drawdown() {
        assert!(matches!(
            calmar_ratio(&[0.01, 0.02]),
            Err(Error::Undefined { .. })
        ));
        assert!(calmar_ratio(&[0.01, -0.02, 0.03]).unwrap() > 0.0);
    }

    #[test]
    fn short_or_broken_input_is_rejected() {
        assert!(matches!(
            annual_volatility(&[0.01]),
            Err(Error::NotEnoughData {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            annual_return(&[]),
            Err(Error::NotEnoughData {
                needed: 1,
                got: 0,
                ..
            })
        ));
        assert!(matches!(
            sharpe_ratio(&[0.01, f64::NAN], 0.0),
            Err(Error::NonFinite { index: 1, .. })
        ));
        assert!(matches!(
            sharpe_ratio(&[0.01, 0.02], f64::INFINITY),
            Err(Error::InvalidParameter {
                parameter: "risk_free",
                ..
            })
        ));
    }
}
