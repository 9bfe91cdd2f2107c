//! Trend indicators of one symbol's daily bars, and the momentum ranking across symbols.

use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;

use crate::domain::BarSeries;
use crate::error::{Error, Result};
use crate::indicators::sma;
use crate::stats;

/// Bars in a trading year: the 52-week window and the volatility history.
pub const YEAR: usize = 252;

/// Windows of a trends request, defaults filled in and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub short: usize,
    pub long: usize,
    pub momentum_lookback: usize,
    pub momentum_skip: usize,
    pub volatility: usize,
}

impl Windows {
    pub fn from_wire(r: &pb::GetTrendsRequest) -> Result<Self> {
        let or = |v: u32, d: usize| if v == 0 { d } else { v as usize };
        let w = Self {
            short: or(r.short_window, 50),
            long: or(r.long_window, 200),
            momentum_lookback: or(r.momentum_lookback, YEAR),
            momentum_skip: r.momentum_skip as usize,
            volatility: or(r.volatility_window, 20),
        };
        if w.short >= w.long {
            return Err(Error::invalid(
                "short_window",
                format!(
                    "must be shorter than long_window ({} ≥ {})",
                    w.short, w.long
                ),
            ));
        }
        if w.long > 100_000 || w.momentum_lookback > 100_000 || w.momentum_skip > 100_000 {
            return Err(Error::invalid(
                "long_window",
                "windows are at most 100,000 bars",
            ));
        }
        if !(2..=YEAR).contains(&w.volatility) {
            return Err(Error::invalid(
                "volatility_window",
                format!("must be between 2 and {YEAR} bars, got {}", w.volatility),
            ));
        }
        Ok(w)
    }
}

/// The trend of one symbol at its last bar (`bars` ends at the evaluation bar and is not
/// empty). `momentum_rank` is left 0 for [`rank`].
pub fn of(symbol: &str, bars: &BarSeries, w: &Windows) -> pb::SymbolTrend {
    let n = bars.len();
    let last = n - 1;
    let close = bars.close[last];
    let mut trend = pb::SymbolTrend {
        symbol: symbol.to_owned(),
        as_of: Some(wire::timestamp(bars.start[last])),
        close,
        ..Default::default()
    };

    // Moving-average regime and the latest crossover.
    let short = sma(&bars.close, w.short).ok();
    let long = sma(&bars.close, w.long).ok();
    trend.ma_short = short.as_ref().map(|s| s[last]);
    trend.ma_long = long.as_ref().map(|l| l[last]);
    if let (Some(short), Some(long)) = (&short, &long) {
        let side = |i: usize| (short[i] - long[i]).partial_cmp(&0.0);
        trend.ma_regime = match side(last) {
            Some(std::cmp::Ordering::Greater) => pb::MaRegime::Bullish,
            Some(std::cmp::Ordering::Less) => pb::MaRegime::Bearish,
            _ => pb::MaRegime::Unspecified,
        }
        .into();
        // Walk back over bars where both are defined; a cross is a change of strict side,
        // ignoring bars where the averages are exactly equal.
        let first = w.long - 1;
        let mut current = None;
        for i in (first..=last).rev() {
            match side(i) {
                Some(std::cmp::Ordering::Equal) | None => continue,
                Some(s) => match current {
                    None => current = Some((s, i)),
                    Some((later, at)) if later != s => {
                        trend.last_cross = if later == std::cmp::Ordering::Greater {
                            pb::CrossKind::Golden
                        } else {
                            pb::CrossKind::Death
                        }
                        .into();
                        trend.last_cross_at = Some(wire::timestamp(bars.start[at]));
                        break;
                    }
                    Some((_, _)) => current = Some((s, i)),
                },
            }
        }
    }

    // Momentum: the return over the lookback, ending `skip` bars before the last.
    if n > w.momentum_lookback + w.momentum_skip {
        let end = last - w.momentum_skip;
        trend.momentum = Some(bars.close[end] / bars.close[end - w.momentum_lookback] - 1.0);
    }

    // 52-week high and low (the last year of bars, or all there are).
    let from = n.saturating_sub(YEAR);
    trend.high_52w = bars.high[from..].iter().copied().fold(f64::MIN, f64::max);
    trend.low_52w = bars.low[from..].iter().copied().fold(f64::MAX, f64::min);
    trend.from_52w_high = close / trend.high_52w - 1.0;
    trend.from_52w_low = close / trend.low_52w - 1.0;

    // Realised volatility and where it stands within its last year.
    let returns = bars.returns();
    if returns.len() >= w.volatility {
        let history = &returns[returns.len().saturating_sub(YEAR + w.volatility - 1)..];
        if let Ok(rolling) = stats::rolling_volatility(history, w.volatility) {
            let values: Vec<f64> = rolling.into_iter().filter(|v| v.is_finite()).collect();
            if let Some(&current) = values.last() {
                trend.volatility = Some(current);
                // A percentile needs a history to compare with: at least a quarter of a year.
                if values.len() >= YEAR / 4 {
                    let below = values.iter().filter(|v| **v <= current).count();
                    let percentile = below as f64 / values.len() as f64;
                    trend.volatility_percentile = Some(percentile);
                    trend.volatility_regime = if percentile < 0.25 {
                        pb::VolatilityRegime::Low
                    } else if percentile > 0.75 {
                        pb::VolatilityRegime::High
                    } else {
                        pb::VolatilityRegime::Normal
                    }
                    .into();
                }
            }
        }
    }
    trend
}

/// Ranks by momentum (1 = strongest; ties by ticker) and orders the trends by rank, the
/// unranked last by ticker.
pub fn rank(trends: &mut [pb::SymbolTrend]) {
    trends.sort_by(|a, b| match (a.momentum, b.momentum) {
        (Some(x), Some(y)) => y.total_cmp(&x).then_with(|| a.symbol.cmp(&b.symbol)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.symbol.cmp(&b.symbol),
    });
    for (i, t) in trends.iter_mut().enumerate() {
        t.momentum_rank = if t.momentum.is_some() {
            i as u32 + 1
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn series(closes: &[f64]) -> BarSeries {
        let mut s = BarSeries::default();
        for (i, &c) in closes.iter().enumerate() {
            s.push(
                DateTime::from_timestamp(i as i64 * 86_400, 0).unwrap(),
                [c, c * 1.01, c * 0.99, c, 1.0],
            );
        }
        s
    }

    fn windows() -> Windows {
        Windows {
            short: 3,
            long: 5,
            momentum_lookback: 5,
            momentum_skip: 0,
            volatility: 3,
        }
    }

    #[test]
    fn a_rise_after_a_fall_is_a_golden_cross() {
        // Falls for 10 bars, then rises for 6: the 3-bar SMA crosses above the 5-bar one.
        let mut closes: Vec<f64> = (0..10).map(|i| 100.0 - f64::from(i)).collect();
        closes.extend((1..=6).map(|i| 91.0 + 3.0 * f64::from(i)));
        let t = of("X", &series(&closes), &windows());
        assert_eq!(t.ma_regime(), pb::MaRegime::Bullish);
        assert_eq!(t.last_cross(), pb::CrossKind::Golden);
        let at = wire::datetime(t.last_cross_at.as_ref().unwrap()).unwrap();
        assert!(
            at.timestamp() / 86_400 >= 10,
            "cross at bar {}",
            at.timestamp() / 86_400
        );
        assert!((t.momentum.unwrap() - (109.0 / closes[10] - 1.0)).abs() < 1e-12);
        assert_eq!(t.from_52w_high, 109.0 / (109.0 * 1.01) - 1.0);
    }

    #[test]
    fn too_little_data_leaves_values_unset() {
        let t = of("X", &series(&[10.0, 11.0]), &windows());
        assert_eq!(t.ma_regime(), pb::MaRegime::Unspecified);
        assert!(t.ma_long.is_none() && t.momentum.is_none() && t.volatility.is_none());
    }

    #[test]
    fn ranking_puts_the_strongest_first_and_the_unranked_last() {
        let mk = |s: &str, m: Option<f64>| pb::SymbolTrend {
            symbol: s.into(),
            momentum: m,
            ..Default::default()
        };
        let mut v = vec![
            mk("C", None),
            mk("B", Some(0.1)),
            mk("A", Some(0.3)),
            mk("D", Some(0.1)),
        ];
        rank(&mut v);
        let order: Vec<(&str, u32)> = v
            .iter()
            .map(|t| (t.symbol.as_str(), t.momentum_rank))
            .collect();
        assert_eq!(order, vec![("A", 1), ("B", 2), ("D", 3), ("C", 0)]);
    }
}
