//! From a model's quantiles of the next-bar log return to what a caller reads: prices, the
//! interval, and the probability that the next close is above the last one.

use chrono::{DateTime, Datelike as _, Duration, Utc, Weekday};
use statrs::distribution::ContinuousCDF as _;

use super::scoring::{Levels, standard_normal};

/// A forecast in price units, derived from log-return quantiles.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceForecast {
    /// Median: `last_close · exp(q50)`.
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    /// Every level's price, ascending.
    pub prices: Vec<f64>,
    pub p_up: f64,
}

/// Prices and P(up) of log-return quantiles `q` (one per level) from `last_close`.
pub fn prices(levels: &Levels, q: &[f64], last_close: f64) -> PriceForecast {
    let prices: Vec<f64> = q.iter().map(|r| last_close * r.exp()).collect();
    PriceForecast {
        point: prices[levels.median()],
        lower: prices[levels.lower()],
        upper: prices[levels.upper()],
        p_up: p_up(levels, q),
        prices,
    }
}

/// P(next close > last close) = P(log return > 0) under the one distribution the three
/// quantiles pin down without adding assumptions about skew: a **split normal** centred on the
/// median, with one scale below it and another above, each chosen so the interval's ends are
/// exactly their quantiles:
///
/// σ₋ = (q50 − q_lo) / −Φ⁻¹(τ_lo),  σ₊ = (q_hi − q50) / Φ⁻¹(τ_hi),
/// F(x) = Φ((x − q50) / σ₋) for x ≤ q50, Φ((x − q50) / σ₊) above,
///
/// so F(q_lo) = τ_lo, F(q50) = ½, F(q_hi) = τ_hi, and P(up) = 1 − F(0). It is above ½ exactly
/// when the median is above 0, so "p_up > 0.5" and the card's direction rule (median > 0)
/// always agree; a zero-width side makes F a step there.
pub fn p_up(levels: &Levels, q: &[f64]) -> f64 {
    let (lo, mid, hi) = (levels.lower(), levels.median(), levels.upper());
    let m = q[mid];
    let f0 = if 0.0 <= m {
        let sigma = (m - q[lo]) / -levels.z()[lo];
        if sigma > 0.0 {
            standard_normal().cdf((0.0 - m) / sigma)
        } else if m > 0.0 {
            0.0
        } else {
            0.5
        }
    } else {
        let sigma = (q[hi] - m) / levels.z()[hi];
        if sigma > 0.0 {
            standard_normal().cdf((0.0 - m) / sigma)
        } else {
            1.0
        }
    };
    (1.0 - f0).clamp(0.0, 1.0)
}

/// Estimated start of the bar after a daily bar starting at `as_of`: the next weekday at the
/// same time of day. The service has no exchange calendar (stock-data does), so a holiday is
/// not skipped; scoring never relies on this estimate — a forecast matures with the next bar
/// that actually arrives.
pub fn next_session(as_of: DateTime<Utc>) -> DateTime<Utc> {
    let mut next = as_of + Duration::days(1);
    while matches!(next.weekday(), Weekday::Sat | Weekday::Sun) {
        next += Duration::days(1);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn levels() -> Levels {
        Levels::parse(&[0.05, 0.5, 0.95], 0.05, 0.95).unwrap()
    }

    #[test]
    fn prices_are_the_last_close_times_exp_of_each_quantile() {
        let f = prices(&levels(), &[-0.02, 0.001, 0.03], 200.0);
        assert!((f.point - 200.0 * 0.001f64.exp()).abs() < 1e-12);
        assert!((f.lower - 200.0 * (-0.02f64).exp()).abs() < 1e-12);
        assert!((f.upper - 200.0 * 0.03f64.exp()).abs() < 1e-12);
        assert_eq!(f.prices.len(), 3);
    }

    #[test]
    fn p_up_matches_the_split_normal_by_hand() {
        // Symmetric around 0: exactly one half.
        assert!((p_up(&levels(), &[-0.02, 0.0, 0.02]) - 0.5).abs() < 1e-15);
        // Median 0.01, lower −0.01: σ₋ = 0.02 / 1.6448536 = 0.0121591;
        // F(0) = Φ(−0.01 / 0.0121591) = Φ(−0.8224268) = 0.2054170 → P(up) = 0.7945830.
        let p = p_up(&levels(), &[-0.01, 0.01, 0.05]);
        assert!((p - 0.794_583_0).abs() < 1e-6, "{p}");
        // Median −0.01, upper 0.03: σ₊ = 0.04 / 1.6448536; F(0) = Φ(0.01 / σ₊) = Φ(0.4112134)
        // = 0.6595420 → P(up) = 0.3404580. The lower side plays no part.
        let p = p_up(&levels(), &[-0.5, -0.01, 0.03]);
        assert!((p - 0.340_458_0).abs() < 1e-6, "{p}");
        // The quantiles themselves: with the median at q05's mirror, F(q_lo) = 0.05.
        let p = p_up(&levels(), &[0.0, 0.02, 0.04]);
        assert!((p - 0.95).abs() < 1e-10, "{p}");
    }

    #[test]
    fn p_up_is_above_one_half_exactly_when_the_median_is_up() {
        for m in [-0.03, -1e-9, 0.0, 1e-9, 0.02] {
            let p = p_up(&levels(), &[m - 0.01, m, m + 0.02]);
            assert_eq!(p > 0.5, m > 0.0, "median {m}: {p}");
        }
        // Degenerate sides.
        assert_eq!(p_up(&levels(), &[0.01, 0.01, 0.02]), 1.0);
        assert_eq!(p_up(&levels(), &[-0.02, -0.01, -0.01]), 0.0);
    }

    #[test]
    fn the_next_session_skips_weekends() {
        let friday = Utc.with_ymd_and_hms(2020, 4, 17, 13, 30, 0).unwrap();
        assert_eq!(
            next_session(friday),
            Utc.with_ymd_and_hms(2020, 4, 20, 13, 30, 0).unwrap()
        );
        let monday = Utc.with_ymd_and_hms(2020, 4, 20, 13, 30, 0).unwrap();
        assert_eq!(
            next_session(monday),
            Utc.with_ymd_and_hms(2020, 4, 21, 13, 30, 0).unwrap()
        );
    }
}
