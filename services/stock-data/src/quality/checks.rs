//! The quality rules, as pure functions over bars already in time order.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use mirai_proto::stock::v1::{QualityFlag, Timeframe};

use super::Settings;
use crate::calendar::Calendar;

/// The values of one bar the checks look at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarValues {
    pub start: DateTime<Utc>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// One finding on one bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub flag: QualityFlag,
    pub detail: String,
}

fn finding(flag: QualityFlag, detail: impl Into<String>) -> Finding {
    Finding {
        flag,
        detail: detail.into(),
    }
}

/// Whether zero volume is normal for an asset type: index levels and currency pairs have no
/// exchange-reported traded volume (many sources send 0), so only a negative volume is
/// suspicious there. For equities, ETFs and crypto a bar exists because something traded, so
/// zero volume is flagged too.
pub fn zero_volume_expected(asset_type: &str) -> bool {
    matches!(asset_type, "index" | "fx")
}

/// Checks of one bar on its own: OHLC consistency, prices > 0, volume > 0 (≥ 0 where zero
/// volume is expected).
pub fn row(bar: &BarValues, asset_type: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    let BarValues {
        open,
        high,
        low,
        close,
        volume,
        ..
    } = *bar;
    let mut problems = Vec::new();
    if high < low {
        problems.push(format!("high {high} < low {low}"));
    }
    if high < open.max(close) {
        problems.push(format!(
            "high {high} < max(open, close) {}",
            open.max(close)
        ));
    }
    if low > open.min(close) {
        problems.push(format!("low {low} > min(open, close) {}", open.min(close)));
    }
    if !problems.is_empty() {
        found.push(finding(QualityFlag::OhlcInconsistent, problems.join("; ")));
    }
    if open.min(high).min(low).min(close) <= 0.0 {
        found.push(finding(
            QualityFlag::NonPositivePrice,
            format!("prices o {open} h {high} l {low} c {close}: not all positive"),
        ));
    }
    let bad_volume = if zero_volume_expected(asset_type) {
        volume < 0.0
    } else {
        volume <= 0.0
    };
    if bad_volume {
        found.push(finding(
            QualityFlag::NonPositiveVolume,
            format!("volume {volume}"),
        ));
    }
    found
}

/// Where the series trades, for the calendar checks.
#[derive(Debug, Clone, Copy)]
pub struct Venue {
    /// `None` for exchanges without a known calendar (no gap or off-calendar verdicts).
    pub calendar: Option<Calendar>,
    pub time_zone: Tz,
}

fn local_date(venue: &Venue, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&venue.time_zone).date_naive()
}

fn calendar_applies(timeframe: Timeframe) -> bool {
    !matches!(
        timeframe,
        Timeframe::OneWeek | Timeframe::OneMonth | Timeframe::Unspecified
    )
}

/// Sessions missing between two consecutive bars (daily: any session without a bar; intraday:
/// any session without a single bar, since a minute with no trades has no bar).
pub fn missing_sessions(
    venue: &Venue,
    timeframe: Timeframe,
    previous: DateTime<Utc>,
    current: DateTime<Utc>,
) -> Vec<NaiveDate> {
    let Some(calendar) = venue.calendar.filter(|_| calendar_applies(timeframe)) else {
        return Vec::new();
    };
    let (from, to) = (local_date(venue, previous), local_date(venue, current));
    if to <= from {
        return Vec::new();
    }
    calendar.sessions_between(from, to).unwrap_or_default()
}

/// The gap and calendar findings of the bar at `current`, given the bar before it.
pub fn calendar_findings(
    venue: &Venue,
    timeframe: Timeframe,
    previous: Option<DateTime<Utc>>,
    current: DateTime<Utc>,
) -> Vec<Finding> {
    let mut found = Vec::new();
    let Some(calendar) = venue.calendar.filter(|_| calendar_applies(timeframe)) else {
        return found;
    };
    let date = local_date(venue, current);
    if calendar.is_trading_day(date) == Some(false) {
        found.push(finding(
            QualityFlag::OffCalendar,
            format!("{date} is not a {} trading day", calendar.name),
        ));
    }
    if let Some(previous) = previous {
        let missing = missing_sessions(venue, timeframe, previous, current);
        if !missing.is_empty() {
            let listed: Vec<String> = missing.iter().take(5).map(|d| d.to_string()).collect();
            let more = if missing.len() > 5 { ", …" } else { "" };
            let sessions = if missing.len() == 1 {
                "session"
            } else {
                "sessions"
            };
            found.push(finding(
                QualityFlag::GapBefore,
                format!(
                    "{} {sessions} missing ({}{more})",
                    missing.len(),
                    listed.join(", ")
                ),
            ));
        }
    }
    found
}

/// Log returns close-to-close; `None` where a close is not positive.
pub fn log_returns(closes: &[f64]) -> Vec<Option<f64>> {
    closes
        .windows(2)
        .map(|w| (w[0] > 0.0 && w[1] > 0.0).then(|| (w[1] / w[0]).ln()))
        .collect()
}

/// The robust z-score of `value` against `sorted` (a window sorted ascending by
/// `f64::total_cmp`): 0.6745·(x − median) / MAD, the median-absolute-deviation analogue of a
/// z-score (Iglewicz and Hoaglin). `None` when the MAD is zero (a flat window says nothing
/// about spread).
///
/// The median is the window's middle. The absolute deviations from it grow walking outward
/// from the middle on either side, so merging the two walks yields them in ascending order and
/// their median comes after half the window: no selection and no copy, once per bar of every
/// import. The tests check it bit for bit against the textbook computation by selection.
pub fn robust_z(value: f64, sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let m = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    // Left walk: indices below `right`, downwards; right walk: from `right` upwards.
    let mut right = sorted.partition_point(|x| *x < m);
    let mut left = right;
    let mut next = || {
        let from_left = left.checked_sub(1).map(|l| (sorted[l] - m).abs());
        let from_right = sorted.get(right).map(|r| (r - m).abs());
        match (from_left, from_right) {
            (Some(l), Some(r)) if l <= r => {
                left -= 1;
                l
            }
            (_, Some(r)) => {
                right += 1;
                r
            }
            (Some(l), None) => {
                left -= 1;
                l
            }
            (None, None) => unreachable!("n deviations of n values"),
        }
    };
    let mut below = f64::NAN;
    for _ in 0..n / 2 {
        below = next();
    }
    let middle = next();
    let mad = if n % 2 == 1 {
        middle
    } else {
        (below + middle) / 2.0
    };
    (mad > 0.0).then(|| 0.6745 * (value - m) / mad)
}

/// Outlier findings for bars `from..` of `closes` (index i is the bar whose close is
/// `closes[i]`); each return is compared with the trailing `settings.outlier_window` returns
/// before it.
pub fn outliers(closes: &[f64], from: usize, settings: &Settings) -> Vec<(usize, Finding)> {
    let returns = log_returns(closes);
    let mut found = Vec::new();
    // The returns of `returns[low..high]`, kept sorted as the window slides.
    let mut window: Vec<f64> = Vec::with_capacity(settings.outlier_window + 1);
    let (mut low, mut high) = (0, 0);
    // returns[j] is the return into bar j + 1.
    for j in from.saturating_sub(1)..returns.len() {
        let start = j.saturating_sub(settings.outlier_window);
        for r in returns[high.max(start)..j].iter().flatten() {
            let at = window.partition_point(|x| x.total_cmp(r).is_lt());
            window.insert(at, *r);
        }
        for r in returns[low..start.min(high)].iter().flatten() {
            let at = window.partition_point(|x| x.total_cmp(r).is_lt());
            window.remove(at);
        }
        (low, high) = (start, j);
        let bar = j + 1;
        if bar < from {
            continue;
        }
        let Some(r) = returns[j] else { continue };
        if window.len() < settings.outlier_min_window.min(settings.outlier_window) {
            continue;
        }
        if let Some(z) = robust_z(r, &window)
            && z.abs() > settings.outlier_z
        {
            let percent = (r.exp() - 1.0) * 100.0;
            found.push((
                bar,
                finding(
                    QualityFlag::OutlierReturn,
                    format!("return {percent:+.1} % (robust z {z:.1})"),
                ),
            ));
        }
    }
    found
}

/// Every derived finding of bars `from..` of `bars` (earlier bars are context only).
pub fn derived(
    bars: &[BarValues],
    from: usize,
    asset_type: &str,
    venue: &Venue,
    timeframe: Timeframe,
    settings: &Settings,
) -> Vec<Vec<Finding>> {
    let mut found: Vec<Vec<Finding>> = vec![Vec::new(); bars.len()];
    for i in from..bars.len() {
        found[i].extend(row(&bars[i], asset_type));
        let previous = i.checked_sub(1).map(|p| bars[p].start);
        found[i].extend(calendar_findings(venue, timeframe, previous, bars[i].start));
    }
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    for (i, f) in outliers(&closes, from, settings) {
        found[i].push(f);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::NYSE;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn bar(o: f64, h: f64, l: f64, c: f64, v: f64) -> BarValues {
        BarValues {
            start: at("2024-03-08T14:30:00Z"),
            open: o,
            high: h,
            low: l,
            close: c,
            volume: v,
        }
    }

    fn flags(found: &[Finding]) -> Vec<QualityFlag> {
        found.iter().map(|f| f.flag).collect()
    }

    const NEW_YORK: Venue = Venue {
        calendar: Some(NYSE),
        time_zone: chrono_tz::America::New_York,
    };

    #[test]
    fn each_row_rule_is_detected_on_its_own() {
        assert!(row(&bar(10.0, 11.0, 9.0, 10.5, 100.0), "equity").is_empty());
        assert_eq!(
            flags(&row(&bar(10.0, 10.2, 9.0, 10.5, 100.0), "equity")),
            [QualityFlag::OhlcInconsistent],
            "high below the close"
        );
        assert_eq!(
            flags(&row(&bar(10.0, 11.0, 10.1, 10.5, 100.0), "equity")),
            [QualityFlag::OhlcInconsistent],
            "low above the open"
        );
        assert_eq!(
            flags(&row(&bar(0.0, 11.0, 0.0, 10.5, 100.0), "equity")),
            [QualityFlag::NonPositivePrice]
        );
        assert_eq!(
            flags(&row(&bar(10.0, 11.0, 9.0, 10.5, 0.0), "equity")),
            [QualityFlag::NonPositiveVolume]
        );
        assert!(
            row(&bar(10.0, 11.0, 9.0, 10.5, 0.0), "index").is_empty(),
            "index levels have no volume"
        );
        assert_eq!(
            flags(&row(&bar(10.0, 11.0, 9.0, 10.5, -1.0), "index")),
            [QualityFlag::NonPositiveVolume]
        );
    }

    #[test]
    fn a_holiday_is_not_a_gap_and_a_missing_session_is() {
        let daily = Timeframe::OneDay;
        // Thursday 28 March 2024 → Monday 1 April: Good Friday and the weekend are closed.
        assert!(
            calendar_findings(
                &NEW_YORK,
                daily,
                Some(at("2024-03-28T13:30:00Z")),
                at("2024-04-01T13:30:00Z")
            )
            .is_empty()
        );
        // Monday 1 April → Wednesday 3 April: Tuesday is missing.
        let found = calendar_findings(
            &NEW_YORK,
            daily,
            Some(at("2024-04-01T13:30:00Z")),
            at("2024-04-03T13:30:00Z"),
        );
        assert_eq!(flags(&found), [QualityFlag::GapBefore]);
        assert_eq!(found[0].detail, "1 session missing (2024-04-02)");
        // A bar on Good Friday itself.
        let found = calendar_findings(&NEW_YORK, daily, None, at("2024-03-29T13:30:00Z"));
        assert_eq!(flags(&found), [QualityFlag::OffCalendar]);
        // Minute bars: a quiet minute is no gap, a whole missing session is.
        let minute = Timeframe::OneMinute;
        assert!(
            calendar_findings(
                &NEW_YORK,
                minute,
                Some(at("2024-04-01T14:00:00Z")),
                at("2024-04-01T15:30:00Z")
            )
            .is_empty()
        );
        assert_eq!(
            flags(&calendar_findings(
                &NEW_YORK,
                minute,
                Some(at("2024-04-01T19:59:00Z")),
                at("2024-04-03T13:30:00Z")
            )),
            [QualityFlag::GapBefore]
        );
        // No calendar, no verdict.
        let unknown = Venue {
            calendar: None,
            time_zone: chrono_tz::UTC,
        };
        assert!(calendar_findings(&unknown, daily, None, at("2024-03-30T00:00:00Z")).is_empty());
    }

    #[test]
    fn the_robust_z_flags_a_jump_but_not_ordinary_noise() {
        // A deterministic ±1 % zig-zag with small variation, then a 30 % jump.
        let mut closes = vec![100.0];
        for i in 0..80 {
            let step = if i % 2 == 0 { 1.01 } else { 0.99 } + (i % 7) as f64 * 0.0005;
            closes.push(closes.last().unwrap() * step);
        }
        let settings = Settings::default();
        assert!(outliers(&closes, 1, &settings).is_empty());
        closes.push(closes.last().unwrap() * 1.3);
        let found = outliers(&closes, 1, &settings);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, closes.len() - 1);
        assert!(found[0].1.detail.starts_with("return +30.0 %"), "{found:?}");
        // Too little history: no verdict.
        let short = &closes[closes.len() - 10..];
        assert!(outliers(short, 1, &settings).is_empty());
    }

    /// The textbook median, by selection.
    fn median(values: &mut [f64]) -> f64 {
        let n = values.len();
        let (below, upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
        let upper = *upper;
        if n % 2 == 1 {
            upper
        } else {
            let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lower + upper) / 2.0
        }
    }

    /// The textbook robust z-score: the median by selection, then the median of the deviations.
    fn reference_robust_z(value: f64, window: &[f64]) -> Option<f64> {
        let mut values = window.to_vec();
        let m = median(&mut values);
        let mut deviations: Vec<f64> = window.iter().map(|x| (x - m).abs()).collect();
        let mad = median(&mut deviations);
        (mad > 0.0).then(|| 0.6745 * (value - m) / mad)
    }

    #[test]
    fn robust_z_of_a_sorted_window_is_the_textbook_value_bit_for_bit() {
        // A deterministic pseudo-random walk with ties, odd and even windows, and flat runs.
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        for n in 1..70 {
            let window: Vec<f64> = (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state % 41) as f64 - 20.0) / 1000.0
                })
                .collect();
            let mut sorted = window.clone();
            sorted.sort_by(f64::total_cmp);
            for value in [0.0, 0.013, -0.5, 3.0] {
                assert_eq!(
                    robust_z(value, &sorted).map(f64::to_bits),
                    reference_robust_z(value, &window).map(f64::to_bits),
                    "n = {n}, value = {value}, window = {window:?}"
                );
            }
        }
        assert_eq!(robust_z(1.0, &[2.0, 2.0, 2.0]), None);
    }

    #[test]
    fn the_sliding_window_sees_what_a_window_rebuilt_per_bar_sees() {
        // A random walk with jumps and non-positive closes (returns that are missing), checked
        // from several first bars, against the z-scores of windows rebuilt for every bar.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut closes = vec![100.0];
        for i in 0..400 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let step = 1.0 + ((state % 201) as f64 - 100.0) / 10_000.0;
            let close = match i {
                50 | 51 | 230 => 0.0,
                120 | 300 => closes.last().unwrap() * 1.4,
                _ => closes.last().copied().unwrap_or(100.0_f64).max(1.0) * step,
            };
            closes.push(close);
        }
        let settings = Settings {
            outlier_z: 1.0,
            ..Settings::default()
        };
        let returns = log_returns(&closes);
        for from in [1, 2, 61, 200] {
            let mut expected = Vec::new();
            for j in from - 1..returns.len() {
                let Some(r) = returns[j] else { continue };
                let start = j.saturating_sub(settings.outlier_window);
                let window: Vec<f64> = returns[start..j].iter().flatten().copied().collect();
                if window.len() < settings.outlier_min_window.min(settings.outlier_window) {
                    continue;
                }
                if let Some(z) = reference_robust_z(r, &window)
                    && z.abs() > settings.outlier_z
                {
                    expected.push((j + 1, format!("{z:.1}")));
                }
            }
            let found: Vec<(usize, String)> = outliers(&closes, from, &settings)
                .into_iter()
                .map(|(bar, f)| {
                    (
                        bar,
                        f.detail
                            .rsplit("z ")
                            .next()
                            .unwrap()
                            .trim_end_matches(')')
                            .to_owned(),
                    )
                })
                .collect();
            assert!(expected.len() > 2, "{expected:?}");
            assert_eq!(found, expected, "from {from}");
        }
    }

    #[test]
    fn robust_z_matches_a_hand_computed_value() {
        // median 3, deviations 2,1,0,1,2 → MAD 1; z(10) = 0.6745 · 7.
        let z = robust_z(10.0, &[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert!((z - 0.6745 * 7.0).abs() < 1e-12);
        assert_eq!(robust_z(1.0, &[2.0, 2.0, 2.0]), None);
    }
}
