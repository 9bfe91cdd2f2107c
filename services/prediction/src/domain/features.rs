//! Bars and the model's input features, exactly as `scripts/train/features.py` computes them.
//!
//! Every feature is a log ratio of two raw values: parsed as f64, the ratio and `ln` in f64,
//! then rounded once to f32 (`as f32`, round to nearest like numpy's `astype(float32)`). A
//! feature row describes one bar and uses only that bar and the one before it, so a symbol's
//! rows never change when the window slides: [`Series`] computes each row once, when its bar
//! arrives, and a forecast copies the last `window` rows.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

/// Columns of the model input's last axis, in order (the card's `features`).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "log_return",
    "log_high_over_close",
    "log_low_over_close",
    "log_open_over_prev_close",
    "log_volume_change",
];

/// Features per bar.
pub const N_FEATURES: usize = 5;

/// One feature row.
pub type FeatureRow = [f32; N_FEATURES];

/// Why bars cannot become features.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BarError {
    /// A price or the volume is zero, negative, infinite or NaN: its logarithm is undefined,
    /// and the trainer refuses such a window too. The caller sees which bar and which value.
    #[error("bar {start}: {field} = {value}, must be finite and > 0")]
    NotPositive {
        start: DateTime<Utc>,
        field: &'static str,
        value: f64,
    },
    /// Bars must be strictly ascending by start; anything else is a data defect upstream.
    #[error("bar {start} does not follow {previous}")]
    OutOfOrder {
        previous: DateTime<Utc>,
        start: DateTime<Utc>,
    },
    /// Two valid bars whose ratio overflows f64 (e.g. a volume of 1e-300 after 1e300).
    #[error("bar {start}: {field} ratio to the previous bar is not finite")]
    NotFinite {
        start: DateTime<Utc>,
        field: &'static str,
    },
}

/// One daily OHLCV bar whose prices and volume are finite and > 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub start: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl Bar {
    pub fn parse(
        start: DateTime<Utc>,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> Result<Self, BarError> {
        for (field, value) in [
            ("open", open),
            ("high", high),
            ("low", low),
            ("close", close),
            ("volume", volume),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(BarError::NotPositive {
                    start,
                    field,
                    value,
                });
            }
        }
        Ok(Self {
            start,
            open,
            high,
            low,
            close,
            volume,
        })
    }
}

/// The feature row of `bar`, with `previous` the bar before it.
pub fn feature_row(previous: &Bar, bar: &Bar) -> Result<FeatureRow, BarError> {
    let ln = |field: &'static str, num: f64, den: f64| -> Result<f32, BarError> {
        let value = (num / den).ln();
        if value.is_finite() {
            Ok(value as f32)
        } else {
            Err(BarError::NotFinite {
                start: bar.start,
                field,
            })
        }
    };
    Ok([
        ln("close", bar.close, previous.close)?,
        ln("high", bar.high, bar.close)?,
        ln("low", bar.low, bar.close)?,
        ln("open", bar.open, previous.close)?,
        ln("volume", bar.volume, previous.volume)?,
    ])
}

/// The last bars of one symbol, oldest first, with the feature row of every bar but the first.
///
/// At most `capacity` bars are kept; pushing a newer bar drops the oldest one and its row.
#[derive(Debug, Clone)]
pub struct Series {
    bars: VecDeque<Bar>,
    /// `rows[i]` describes `bars[i + 1]`.
    rows: VecDeque<FeatureRow>,
    capacity: usize,
}

impl Series {
    /// A series of `bars` (ascending), keeping the last `capacity` (at least 2).
    pub fn new(bars: impl IntoIterator<Item = Bar>, capacity: usize) -> Result<Self, BarError> {
        let mut series = Self {
            bars: VecDeque::new(),
            rows: VecDeque::new(),
            capacity: capacity.max(2),
        };
        for bar in bars {
            series.push(bar)?;
        }
        Ok(series)
    }

    /// Appends a bar newer than the last one.
    pub fn push(&mut self, bar: Bar) -> Result<(), BarError> {
        if let Some(last) = self.bars.back() {
            if bar.start <= last.start {
                return Err(BarError::OutOfOrder {
                    previous: last.start,
                    start: bar.start,
                });
            }
            let row = feature_row(last, &bar)?;
            self.rows.push_back(row);
        }
        self.bars.push_back(bar);
        while self.bars.len() > self.capacity {
            self.bars.pop_front();
            self.rows.pop_front();
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    pub fn bars(&self) -> impl DoubleEndedIterator<Item = &Bar> + ExactSizeIterator {
        self.bars.iter()
    }

    /// The newest bar: a forecast's origin.
    pub fn last(&self) -> Option<&Bar> {
        self.bars.back()
    }

    /// The bar before the newest one.
    pub fn previous(&self) -> Option<&Bar> {
        self.bars.len().checked_sub(2).map(|i| &self.bars[i])
    }

    /// Whether a model with this window can forecast from the newest bar.
    pub fn has_window(&self, window: usize) -> bool {
        self.rows.len() >= window
    }

    /// Appends the last `window` feature rows (oldest first), `window × N_FEATURES` values, to
    /// `out`: the model input of a forecast at the newest bar. `None` when there are fewer.
    pub fn window_into(&self, window: usize, out: &mut Vec<f32>) -> Option<()> {
        let skip = self.rows.len().checked_sub(window)?;
        out.reserve(window * N_FEATURES);
        for row in self.rows.iter().skip(skip) {
            out.extend_from_slice(row);
        }
        Some(())
    }

    /// Sample standard deviation (ddof 1) of the last `n` daily log returns up to and including
    /// the bar `skip` bars before the newest (0: the newest): the rolling-volatility Gaussian
    /// baseline's sigma at that bar (`n` = 20 in the card). `None` without `n + 1` bars there.
    pub fn rolling_sigma(&self, n: usize, skip: usize) -> Option<f64> {
        if n < 2 || self.bars.len() < n + 1 + skip {
            return None;
        }
        let closes: Vec<f64> = self
            .bars
            .iter()
            .rev()
            .skip(skip)
            .take(n + 1)
            .map(|b| b.close)
            .collect();
        let returns: Vec<f64> = closes.windows(2).map(|w| (w[0] / w[1]).ln()).collect();
        let mean = returns.iter().sum::<f64>() / n as f64;
        let ss: f64 = returns.iter().map(|r| (r - mean).powi(2)).sum();
        Some((ss / (n - 1) as f64).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2020, 1, d, 14, 30, 0).unwrap()
    }

    fn bar(d: u32, o: f64, h: f64, l: f64, c: f64, v: f64) -> Bar {
        Bar::parse(day(d), o, h, l, c, v).unwrap()
    }

    #[test]
    fn a_row_is_five_log_ratios_rounded_once_to_f32() {
        let prev = bar(2, 100.0, 101.0, 99.0, 100.0, 1000.0);
        let cur = bar(3, 101.0, 103.0, 100.5, 102.0, 1500.0);
        let row = feature_row(&prev, &cur).unwrap();
        let expected = [
            (102.0f64 / 100.0).ln() as f32,
            (103.0f64 / 102.0).ln() as f32,
            (100.5f64 / 102.0).ln() as f32,
            (101.0f64 / 100.0).ln() as f32,
            (1500.0f64 / 1000.0).ln() as f32,
        ];
        assert_eq!(row, expected);
    }

    #[test]
    fn non_positive_or_non_finite_values_are_refused_by_name() {
        for (field, values) in [
            ("open", [0.0, 1.0, 1.0, 1.0, 1.0]),
            ("high", [1.0, -1.0, 1.0, 1.0, 1.0]),
            ("low", [1.0, 1.0, f64::NAN, 1.0, 1.0]),
            ("close", [1.0, 1.0, 1.0, f64::INFINITY, 1.0]),
            ("volume", [1.0, 1.0, 1.0, 1.0, 0.0]),
        ] {
            let [o, h, l, c, v] = values;
            let err = Bar::parse(day(2), o, h, l, c, v).unwrap_err();
            assert!(
                matches!(err, BarError::NotPositive { field: f, .. } if f == field),
                "{err}"
            );
        }
    }

    #[test]
    fn the_series_keeps_capacity_bars_and_rows_stay_aligned() {
        let mut series = Series::new([], 3).unwrap();
        for d in 2..=6 {
            let c = 100.0 + d as f64;
            series
                .push(bar(d, c, c + 1.0, c - 1.0, c, 1000.0 + d as f64))
                .unwrap();
        }
        assert_eq!(series.len(), 3);
        assert_eq!(series.last().unwrap().start, day(6));
        assert_eq!(series.previous().unwrap().start, day(5));
        let mut window = Vec::new();
        series.window_into(2, &mut window).unwrap();
        assert_eq!(window.len(), 2 * N_FEATURES);
        // The last row describes bar 6 against bar 5.
        assert_eq!(window[N_FEATURES], (106.0f64 / 105.0).ln() as f32);
        assert!(series.has_window(2) && !series.has_window(3));
        let mut too_long = Vec::new();
        assert!(series.window_into(3, &mut too_long).is_none());
    }

    #[test]
    fn bars_must_ascend() {
        let mut series = Series::new([bar(3, 1.0, 1.0, 1.0, 1.0, 1.0)], 10).unwrap();
        let err = series.push(bar(3, 1.0, 1.0, 1.0, 1.0, 1.0)).unwrap_err();
        assert!(matches!(err, BarError::OutOfOrder { .. }));
    }

    #[test]
    fn rolling_sigma_is_the_sample_std_of_the_last_returns() {
        let closes = [100.0, 101.0, 99.0, 102.0];
        let series = Series::new(
            closes
                .iter()
                .enumerate()
                .map(|(i, &c)| bar(2 + i as u32, c, c, c, c, 1.0)),
            10,
        )
        .unwrap();
        let r: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let mean = r.iter().sum::<f64>() / 3.0;
        let expected = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((series.rolling_sigma(3, 0).unwrap() - expected).abs() < 1e-15);
        assert!(series.rolling_sigma(4, 0).is_none());
        // One bar back: the two returns before the newest.
        let r = &r[..2];
        let mean = (r[0] + r[1]) / 2.0;
        let expected = ((r[0] - mean).powi(2) + (r[1] - mean).powi(2)).sqrt();
        assert!((series.rolling_sigma(2, 1).unwrap() - expected).abs() < 1e-15);
    }
}
