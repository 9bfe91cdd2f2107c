//! Scoring arithmetic: one matured forecast against what happened, a set of them against the
//! baselines, and the Diebold–Mariano test between two versions.
//!
//! The definitions are the model card's (`card.metrics.definitions`, implemented in
//! `scripts/train/metrics.py`), so a replay of the test period through the service reproduces
//! the card: all errors are on the next-bar log return `y = ln(close[t+1] / close[t])`; the
//! point forecast is the median; the random walk forecasts `y = 0`; a direction is "up" only
//! when strictly above 0 (a median of exactly 0 says "not up"); the interval is inclusive at
//! both ends; the Gaussian baseline is zero-mean with the last 20 daily returns' sample std.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use statrs::distribution::{ContinuousCDF as _, Normal};

/// Why a set of quantile levels cannot describe a model output.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LevelsError {
    /// Levels must be strictly ascending inside (0, 1).
    #[error("quantile levels {0:?} must be strictly ascending inside (0, 1)")]
    NotAscending(Vec<f64>),
    /// The point forecast is the median, so 0.5 must be one of the levels.
    #[error("quantile levels {0:?} have no median (0.5)")]
    NoMedian(Vec<f64>),
    /// The interval's ends must be levels of the output, lower below the median below upper.
    #[error("interval [{lower}, {upper}] is not made of output levels around the median")]
    Interval { lower: f64, upper: f64 },
}

/// The quantile levels a model outputs, with the median and the interval's ends located.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    levels: Vec<f64>,
    /// Φ⁻¹ of each level.
    z: Vec<f64>,
    median: usize,
    lower: usize,
    upper: usize,
}

/// The standard normal distribution.
pub fn standard_normal() -> Normal {
    Normal::standard()
}

impl Levels {
    pub fn parse(levels: &[f64], lower: f64, upper: f64) -> Result<Self, LevelsError> {
        let ascending = levels.windows(2).all(|w| w[0] < w[1])
            && levels.iter().all(|l| *l > 0.0 && *l < 1.0)
            && !levels.is_empty();
        if !ascending {
            return Err(LevelsError::NotAscending(levels.to_vec()));
        }
        let find = |level: f64| levels.iter().position(|l| (l - level).abs() < 1e-12);
        let median = find(0.5).ok_or_else(|| LevelsError::NoMedian(levels.to_vec()))?;
        let (Some(lo), Some(hi)) = (find(lower), find(upper)) else {
            return Err(LevelsError::Interval { lower, upper });
        };
        if !(lo < median && median < hi) {
            return Err(LevelsError::Interval { lower, upper });
        }
        let normal = standard_normal();
        Ok(Self {
            z: levels.iter().map(|l| normal.inverse_cdf(*l)).collect(),
            levels: levels.to_vec(),
            median,
            lower: lo,
            upper: hi,
        })
    }

    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn median(&self) -> usize {
        self.median
    }

    pub fn lower(&self) -> usize {
        self.lower
    }

    pub fn upper(&self) -> usize {
        self.upper
    }

    /// Φ⁻¹ of each level.
    pub fn z(&self) -> &[f64] {
        &self.z
    }

    /// Nominal coverage of the interval, e.g. 0.9.
    pub fn nominal_coverage(&self) -> f64 {
        // Rounded like the card (0.95 - 0.05 is 0.8999999999999999 in f64).
        ((self.levels[self.upper] - self.levels[self.lower]) * 1e10).round() / 1e10
    }

    /// Mean pinball loss of quantile forecasts `q` (one per level) for the outcome `y`:
    /// mean over levels of max(τ (y − q), (τ − 1)(y − q)).
    pub fn pinball(&self, q: &[f64], y: f64) -> f64 {
        let total: f64 = self
            .levels
            .iter()
            .zip(q)
            .map(|(tau, q)| {
                let d = y - q;
                (tau * d).max((tau - 1.0) * d)
            })
            .sum();
        total / self.levels.len() as f64
    }

    /// The rolling-volatility Gaussian baseline's quantiles for `sigma`: σ·Φ⁻¹(τ).
    pub fn gaussian(&self, sigma: f64) -> Vec<f64> {
        self.z.iter().map(|z| sigma * z).collect()
    }
}

/// One matured forecast, scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Realised log return ln(actual / last close).
    pub y: f64,
    /// |y − median|.
    pub abs_error: f64,
    /// |y|: the random walk's error.
    pub naive_abs_error: f64,
    /// Mean pinball loss over the model's levels.
    pub pinball: f64,
    /// The Gaussian baseline's mean pinball loss on the same day.
    pub baseline_pinball: f64,
    /// lower ≤ y ≤ upper.
    pub inside: bool,
    /// (median > 0) == (y > 0).
    pub direction_hit: bool,
}

/// Scores quantile forecasts `q` (log returns, one per level) made at a bar that closed at
/// `last_close`, against the next bar's `actual_close`; `baseline_sigma` is the Gaussian
/// baseline's sigma at the forecast's origin.
pub fn score(
    levels: &Levels,
    q: &[f64],
    last_close: f64,
    actual_close: f64,
    baseline_sigma: f64,
) -> Outcome {
    let y = (actual_close / last_close).ln();
    let median = q[levels.median];
    Outcome {
        y,
        abs_error: (y - median).abs(),
        naive_abs_error: y.abs(),
        pinball: levels.pinball(q, y),
        baseline_pinball: levels.pinball(&levels.gaussian(baseline_sigma), y),
        inside: q[levels.lower] <= y && y <= q[levels.upper],
        direction_hit: (median > 0.0) == (y > 0.0),
    }
}

/// A scored forecast as the scoreboard aggregates it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub symbol: String,
    /// Start of the bar that was forecast (groups the cross-section for the IC).
    pub target_start: DateTime<Utc>,
    /// The median forecast (log return).
    pub median: f64,
    pub outcome: Outcome,
}

/// Accuracy of a set of scored forecasts (the proto's `ScoreMetrics`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub count: u64,
    pub mae: f64,
    pub rmse: f64,
    pub naive_mae: f64,
    /// mae / naive_mae; `None` when naive_mae is 0 (or nothing was scored).
    pub mase: Option<f64>,
    pub hit_rate: f64,
    pub always_up_hit_rate: f64,
    pub pinball: f64,
    pub baseline_pinball: f64,
    pub coverage: f64,
    pub nominal_coverage: f64,
    /// Mean per-bar Pearson correlation of median vs y across symbols (bars with ≥ 2).
    pub information_coefficient: Option<f64>,
    /// The same with Spearman rank correlation.
    pub rank_information_coefficient: Option<f64>,
}

impl Metrics {
    /// Aggregates `scored`; `nominal_coverage` is the interval's nominal level.
    pub fn of(scored: &[Scored], nominal_coverage: f64) -> Self {
        let n = scored.len();
        if n == 0 {
            return Self {
                nominal_coverage,
                ..Self::default()
            };
        }
        let mean = |f: &dyn Fn(&Scored) -> f64| scored.iter().map(f).sum::<f64>() / n as f64;
        let share =
            |f: &dyn Fn(&Scored) -> bool| scored.iter().filter(|s| f(s)).count() as f64 / n as f64;
        let mae = mean(&|s| s.outcome.abs_error);
        let naive_mae = mean(&|s| s.outcome.naive_abs_error);
        let (ic, rank_ic) = information_coefficients(scored);
        Self {
            count: n as u64,
            mae,
            rmse: mean(&|s| s.outcome.abs_error.powi(2)).sqrt(),
            naive_mae,
            mase: (naive_mae > 0.0).then(|| mae / naive_mae),
            hit_rate: share(&|s| s.outcome.direction_hit),
            always_up_hit_rate: share(&|s| s.outcome.y > 0.0),
            pinball: mean(&|s| s.outcome.pinball),
            baseline_pinball: mean(&|s| s.outcome.baseline_pinball),
            coverage: share(&|s| s.outcome.inside),
            nominal_coverage,
            information_coefficient: ic,
            rank_information_coefficient: rank_ic,
        }
    }
}

/// Mean over target bars (with at least two symbols and some spread) of the Pearson and the
/// Spearman correlation between the median forecast and the outcome.
fn information_coefficients(scored: &[Scored]) -> (Option<f64>, Option<f64>) {
    let mut by_bar: BTreeMap<DateTime<Utc>, Vec<(f64, f64)>> = BTreeMap::new();
    for s in scored {
        by_bar
            .entry(s.target_start)
            .or_default()
            .push((s.median, s.outcome.y));
    }
    let (mut ic, mut rank_ic) = (Vec::new(), Vec::new());
    for pairs in by_bar.values().filter(|p| p.len() >= 2) {
        let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        if let Some(r) = pearson(&x, &y) {
            ic.push(r);
        }
        if let Some(r) = pearson(&ranks(&x), &ranks(&y)) {
            rank_ic.push(r);
        }
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    (mean(ic), mean(rank_ic))
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Ranks 1..n, ties sharing their average rank.
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &order[i..=j] {
            ranks[*k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// A Diebold–Mariano test of equal accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DieboldMariano {
    /// Pairs compared.
    pub n: usize,
    /// Mean loss difference (a − b); below 0 means a is more accurate.
    pub mean_difference: f64,
    pub statistic: f64,
    /// Two-sided p-value from the standard normal.
    pub p_value: f64,
}

/// Diebold–Mariano on one-step-ahead loss differences `d = loss_a − loss_b` (h = 1, so the
/// long-run variance is the lag-0 variance): DM = mean(d) / sqrt(var(d) / n), population
/// variance. With no spread at all the test says nothing (DM 0, p 1), as the trainer's does.
pub fn diebold_mariano(differences: &[f64]) -> DieboldMariano {
    let n = differences.len();
    if n == 0 {
        return DieboldMariano {
            n,
            mean_difference: 0.0,
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let mean = differences.iter().sum::<f64>() / n as f64;
    let var = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64;
    if var.is_nan() || var <= 0.0 {
        return DieboldMariano {
            n,
            mean_difference: mean,
            statistic: 0.0,
            p_value: 1.0,
        };
    }
    let statistic = mean / (var / n as f64).sqrt();
    let p_value = 2.0 * (1.0 - standard_normal().cdf(statistic.abs()));
    DieboldMariano {
        n,
        mean_difference: mean,
        statistic,
        p_value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn levels() -> Levels {
        Levels::parse(&[0.05, 0.5, 0.95], 0.05, 0.95).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn levels_locate_the_median_and_the_interval() {
        let l = levels();
        assert_eq!((l.lower(), l.median(), l.upper()), (0, 1, 2));
        assert_eq!(l.nominal_coverage(), 0.9);
        assert!(close(l.z()[2], 1.6448536269514722));
        assert!(close(l.z()[1], 0.0));
        assert!(matches!(
            Levels::parse(&[0.5, 0.05], 0.05, 0.5),
            Err(LevelsError::NotAscending(_))
        ));
        assert!(matches!(
            Levels::parse(&[0.1, 0.9], 0.1, 0.9),
            Err(LevelsError::NoMedian(_))
        ));
        assert!(matches!(
            Levels::parse(&[0.05, 0.5, 0.95], 0.1, 0.95),
            Err(LevelsError::Interval { .. })
        ));
    }

    #[test]
    fn pinball_penalises_each_side_by_its_level() {
        // The trainer's hand-worked case: y = 1, q = 2 (d = −1) and y = 2, q = 0 (d = +2)
        // at levels 0.1, 0.5, 0.9: day means 0.5 and 1.0.
        let l = Levels::parse(&[0.1, 0.5, 0.9], 0.1, 0.9).unwrap();
        assert!(close(l.pinball(&[2.0, 2.0, 2.0], 1.0), 0.5));
        assert!(close(l.pinball(&[0.0, 0.0, 0.0], 2.0), 1.0));
    }

    #[test]
    fn one_outcome_by_hand() {
        // Last close 100, actual 102: y = ln 1.02 = 0.0198026272961797.
        // Forecast q = [-0.01, 0.005, 0.03]: error |y − 0.005| = 0.0148026272961797,
        // inside [-0.01, 0.03], both up → hit.
        // Pinball: d = [0.0298026…, 0.0148026…, −0.0101973…]
        //   0.05·0.0298026273 = 0.00149013136, 0.5·0.0148026273 = 0.00740131365,
        //   0.05·0.0101973727 = 0.000509868635 → mean 0.003133771216.
        let o = score(&levels(), &[-0.01, 0.005, 0.03], 100.0, 102.0, 0.01);
        let y = 1.02f64.ln();
        assert!(close(o.y, y));
        assert!(close(o.abs_error, y - 0.005));
        assert!(close(o.naive_abs_error, y));
        assert!(
            (o.pinball - 0.003_133_771_216).abs() < 1e-11,
            "{}",
            o.pinball
        );
        assert!(o.inside && o.direction_hit);
        // Gaussian baseline σ = 0.01: q = [−0.016448536, 0, 0.016448536];
        // d = [0.036251164, 0.019802627, 0.003354091], all positive
        //   → (0.05·0.036251164 + 0.5·0.019802627 + 0.95·0.003354091) / 3 = 0.0049667528.
        let z = 0.016_448_536_269_514_72;
        let expected = (0.05 * (y + z) + 0.5 * y + 0.95 * (y - z)) / 3.0;
        assert!(close(o.baseline_pinball, expected));
        assert!((o.baseline_pinball - 0.004_966_752_767).abs() < 1e-11);

        // A fall outside the interval, forecast up: miss, outside.
        let o = score(&levels(), &[-0.01, 0.005, 0.03], 100.0, 98.0, 0.01);
        assert!(!o.inside && !o.direction_hit);
        // A median of exactly 0 says "not up"; a flat day is "not up" too → hit.
        let o = score(&levels(), &[-0.01, 0.0, 0.01], 100.0, 100.0, 0.01);
        assert!(o.direction_hit && o.inside && o.y == 0.0);
    }

    #[test]
    fn metrics_aggregate_like_the_card() {
        // The trainer's hand-worked set: y = [0.01, −0.02, 0.03, 0.0],
        // f = [0.02, −0.01, −0.01, 0.01] → errors 0.01, 0.01, 0.04, 0.01.
        let day = |d: u32| Utc.with_ymd_and_hms(2020, 1, d, 14, 30, 0).unwrap();
        let l = levels();
        let ys = [0.01f64, -0.02, 0.03, 0.0];
        let fs = [0.02, -0.01, -0.01, 0.01];
        let scored: Vec<Scored> = ys
            .iter()
            .zip(fs)
            .enumerate()
            .map(|(i, (&y, f))| {
                let q = [f - 0.02, f, f + 0.02];
                let actual = 100.0 * y.exp();
                Scored {
                    symbol: "SPX".into(),
                    target_start: day(2 + i as u32),
                    median: f,
                    outcome: score(&l, &q, 100.0, actual, 0.01),
                }
            })
            .collect();
        let m = Metrics::of(&scored, l.nominal_coverage());
        assert_eq!(m.count, 4);
        assert!(close(m.mae, 0.07 / 4.0));
        assert!(close(m.rmse, 4.75e-4f64.sqrt()));
        assert!(close(m.naive_mae, 0.06 / 4.0));
        assert!(close(m.mase.unwrap(), 0.0175 / 0.015));
        // f > 0: T F F T; y > 0: T F T F → 2 of 4.
        assert_eq!(m.hit_rate, 0.5);
        assert_eq!(m.always_up_hit_rate, 0.5);
        // Inside f ± 0.02: day 3 (0.03 vs [−0.03, 0.01]) is outside.
        assert_eq!(m.coverage, 0.75);
        // One symbol per bar: no cross-section.
        assert_eq!(m.information_coefficient, None);
        assert_eq!(Metrics::of(&[], 0.9).mase, None);
    }

    #[test]
    fn information_coefficients_by_hand() {
        let t = Utc.with_ymd_and_hms(2020, 1, 2, 14, 30, 0).unwrap();
        let l = levels();
        let mk = |symbol: &str, median: f64, y: f64| Scored {
            symbol: symbol.into(),
            target_start: t,
            median,
            outcome: score(
                &l,
                &[median - 0.1, median, median + 0.1],
                1.0,
                y.exp(),
                0.01,
            ),
        };
        // Perfectly ordered but not linear: rank IC 1, Pearson below 1.
        let scored = vec![
            mk("A", 0.01, 0.001),
            mk("B", 0.02, 0.002),
            mk("C", 0.03, 0.1),
        ];
        let m = Metrics::of(&scored, 0.9);
        assert!(close(m.rank_information_coefficient.unwrap(), 1.0));
        let ic = m.information_coefficient.unwrap();
        assert!(ic > 0.8 && ic < 1.0, "{ic}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn diebold_mariano_by_hand() {
        // d = [1, −1, 2, 0]: mean 0.5, population variance 1.25, DM = 0.5 / sqrt(1.25 / 4).
        let dm = diebold_mariano(&[1.0, -1.0, 2.0, 0.0]);
        assert!(close(dm.statistic, 0.894_427_190_999_915_9));
        assert!((dm.p_value - 0.3711).abs() < 1e-4, "{}", dm.p_value);
        assert_eq!(dm.mean_difference, 0.5);
        let same = diebold_mariano(&[0.0, 0.0, 0.0]);
        assert_eq!((same.statistic, same.p_value), (0.0, 1.0));
    }
}
