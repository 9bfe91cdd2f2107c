//! Exchange trading calendars: which days an exchange trades, and when its session closes.
//!
//! Only the NYSE calendar is known (Nasdaq observes the same days). No crate on crates.io
//! covers 2000 onwards with special closures and half days: `nyse-holiday-cal` covers
//! 2020–2028 without either, `trading-calendar` 2020–2030, `exchange-hours` 2010–2028. So the
//! rules are written down here, from the exchange's published rules, and checked against the
//! real S&P 500 history in `sample/` (the sample loader reports every bar off the calendar and
//! every session missing from it).
//!
//! Full closures: New Year's Day (a Sunday moves to Monday; a Saturday is not made up), Martin
//! Luther King Jr. Day (third Monday of January), Washington's Birthday (third Monday of
//! February), Good Friday (two days before Easter Sunday), Memorial Day (last Monday of May),
//! Juneteenth (from 2022), Independence Day, Labor Day (first Monday of September),
//! Thanksgiving (fourth Thursday of November) and Christmas; fixed-date holidays on a Saturday
//! move to Friday and on a Sunday to Monday. Special closures: 11–14 September 2001,
//! 11 June 2004 (Reagan), 2 January 2007 (Ford), 29–30 October 2012 (Sandy), 5 December 2018
//! (G. H. W. Bush), 9 January 2025 (Carter).
//!
//! Early closes at 13:00: 3 July when it is a Monday, Tuesday or Thursday (and, from 2013, a
//! Wednesday); 5 July when it is a Friday (until 2012); the day after Thanksgiving; 24 December
//! from Monday to Thursday; 26 December 2003.
//!
//! The rules are valid for [`FIRST_YEAR`]..=[`LAST_YEAR`]; outside them the calendar says so
//! (`None`) rather than guess.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday};

/// First year the rules are known to hold.
pub const FIRST_YEAR: i32 = 2000;
/// Last year the rules are known to hold (closures announced later are not known yet).
pub const LAST_YEAR: i32 = 2026;

/// One trading day: the local date and its regular session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub date: NaiveDate,
    pub open: NaiveTime,
    pub close: NaiveTime,
}

impl Session {
    pub fn is_early_close(&self) -> bool {
        self.close < regular_close()
    }
}

fn regular_open() -> NaiveTime {
    NaiveTime::from_hms_opt(9, 30, 0).expect("valid time")
}

fn regular_close() -> NaiveTime {
    NaiveTime::from_hms_opt(16, 0, 0).expect("valid time")
}

fn early_close() -> NaiveTime {
    NaiveTime::from_hms_opt(13, 0, 0).expect("valid time")
}

/// A trading calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calendar {
    /// The calendar's name as reported (`GetQualityReportResponse.calendar`).
    pub name: &'static str,
}

/// The NYSE calendar (also used for Nasdaq, which observes the same days and hours).
pub const NYSE: Calendar = Calendar { name: "XNYS" };

impl Calendar {
    /// The calendar of an exchange, by MIC; `None` for exchanges whose calendar is unknown.
    pub fn for_mic(mic: &str) -> Option<Self> {
        matches!(mic, "XNYS" | "XNAS").then_some(NYSE)
    }

    /// The session on `date`: `Some(Some(_))` on a trading day, `Some(None)` on a closed day,
    /// `None` when the date is outside the years the rules cover.
    pub fn session(&self, date: NaiveDate) -> Option<Option<Session>> {
        if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
            return None;
        }
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) || is_holiday(date) {
            return Some(None);
        }
        let close = if is_early_close(date) {
            early_close()
        } else {
            regular_close()
        };
        Some(Some(Session {
            date,
            open: regular_open(),
            close,
        }))
    }

    /// True on a trading day; `None` outside the known years.
    pub fn is_trading_day(&self, date: NaiveDate) -> Option<bool> {
        self.session(date).map(|s| s.is_some())
    }

    /// Trading days strictly between `after` and `before`, oldest first. `None` when part of
    /// the span is outside the known years (a gap there cannot be judged).
    pub fn sessions_between(&self, after: NaiveDate, before: NaiveDate) -> Option<Vec<NaiveDate>> {
        let mut days = Vec::new();
        let mut day = after.succ_opt()?;
        while day < before {
            if self.is_trading_day(day)? {
                days.push(day);
            }
            day = day.succ_opt()?;
        }
        Some(days)
    }

    /// Every early-close date in the known years (used to end daily bars at 13:00).
    pub fn early_closes(&self) -> Vec<NaiveDate> {
        let first = NaiveDate::from_ymd_opt(FIRST_YEAR, 1, 1).expect("valid date");
        let last = NaiveDate::from_ymd_opt(LAST_YEAR, 12, 31).expect("valid date");
        first
            .iter_days()
            .take_while(|d| *d <= last)
            .filter(|d| matches!(self.session(*d), Some(Some(s)) if s.is_early_close()))
            .collect()
    }
}

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
}

/// The `n`th (1-based) `weekday` of a month.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n).expect("valid date")
}

fn last_monday_of_may(year: i32) -> NaiveDate {
    let mut day = ymd(year, 5, 31);
    while day.weekday() != Weekday::Mon {
        day = day.pred_opt().expect("valid date");
    }
    day
}

/// Easter Sunday (Gregorian), by the anonymous Gregorian algorithm (Meeus/Jones/Butcher).
pub fn easter_sunday(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    ymd(year, month as u32, day as u32)
}

/// A fixed-date holiday as observed: Saturday → Friday, Sunday → Monday.
fn observed(date: NaiveDate) -> NaiveDate {
    match date.weekday() {
        Weekday::Sat => date - Duration::days(1),
        Weekday::Sun => date + Duration::days(1),
        _ => date,
    }
}

/// Closures that no rule produces.
const SPECIAL_CLOSURES: &[(i32, u32, u32)] = &[
    (2001, 9, 11), // September 11 attacks
    (2001, 9, 12),
    (2001, 9, 13),
    (2001, 9, 14),
    (2004, 6, 11),  // National Day of Mourning, Ronald Reagan
    (2007, 1, 2),   // National Day of Mourning, Gerald Ford
    (2012, 10, 29), // Hurricane Sandy
    (2012, 10, 30),
    (2018, 12, 5), // National Day of Mourning, George H. W. Bush
    (2025, 1, 9),  // National Day of Mourning, Jimmy Carter
];

fn is_holiday(date: NaiveDate) -> bool {
    let year = date.year();
    // New Year's Day: a Sunday moves to Monday; a Saturday is not observed on the Friday
    // before (that Friday is the last session of the old year).
    let new_year = ymd(year, 1, 1);
    let new_year_observed = match new_year.weekday() {
        Weekday::Sun => Some(ymd(year, 1, 2)),
        Weekday::Sat => None,
        _ => Some(new_year),
    };
    let mut holidays = vec![
        nth_weekday(year, 1, Weekday::Mon, 3),
        nth_weekday(year, 2, Weekday::Mon, 3),
        easter_sunday(year) - Duration::days(2),
        last_monday_of_may(year),
        observed(ymd(year, 7, 4)),
        nth_weekday(year, 9, Weekday::Mon, 1),
        nth_weekday(year, 11, Weekday::Thu, 4),
        observed(ymd(year, 12, 25)),
    ];
    holidays.extend(new_year_observed);
    if year >= 2022 {
        holidays.push(observed(ymd(year, 6, 19)));
    }
    holidays.contains(&date)
        || SPECIAL_CLOSURES
            .iter()
            .any(|&(y, m, d)| date == ymd(y, m, d))
}

fn is_early_close(date: NaiveDate) -> bool {
    let (year, month, day) = (date.year(), date.month(), date.day());
    let weekday = date.weekday();
    let day_after_thanksgiving = nth_weekday(year, 11, Weekday::Thu, 4) + Duration::days(1);
    match (month, day) {
        (7, 3) => {
            matches!(weekday, Weekday::Mon | Weekday::Tue | Weekday::Thu)
                || (weekday == Weekday::Wed && year >= 2013)
        }
        (7, 5) => weekday == Weekday::Fri && year <= 2012,
        (12, 24) => matches!(
            weekday,
            Weekday::Mon | Weekday::Tue | Weekday::Wed | Weekday::Thu
        ),
        _ => date == day_after_thanksgiving || date == ymd(2003, 12, 26),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(date: &str) -> bool {
        NYSE.is_trading_day(date.parse().unwrap()) == Some(false)
    }

    #[test]
    fn easter_matches_known_dates() {
        for (year, month, day) in [
            (2000, 4, 23),
            (2008, 3, 23),
            (2011, 4, 24),
            (2019, 4, 21),
            (2025, 4, 20),
        ] {
            assert_eq!(easter_sunday(year), ymd(year, month, day), "{year}");
        }
    }

    #[test]
    fn rule_holidays_and_their_observed_days() {
        for day in [
            "2000-04-21", // Good Friday
            "2004-12-24", // Christmas on a Saturday → Friday
            "2005-12-26", // Christmas on a Sunday → Monday
            "2006-01-02", // New Year's Day on a Sunday → Monday
            "2009-07-03", // Independence Day on a Saturday → Friday
            "2010-07-05", // Independence Day on a Sunday → Monday
            "2015-04-03", // Good Friday
            "2021-01-18", // MLK Day
            "2022-06-20", // Juneteenth on a Sunday → Monday
            "2023-06-19", // Juneteenth
            "2024-11-28", // Thanksgiving
            "2026-05-25", // Memorial Day
        ] {
            assert!(closed(day), "{day} should be closed");
        }
    }

    #[test]
    fn a_saturday_new_year_is_not_made_up_and_juneteenth_starts_in_2022() {
        assert!(
            !closed("2010-12-31"),
            "Friday before a Saturday New Year trades"
        );
        assert!(!closed("2021-12-31"));
        assert!(!closed("2021-06-18"), "no Juneteenth before 2022");
    }

    #[test]
    fn special_closures_are_known() {
        for day in [
            "2001-09-11",
            "2001-09-14",
            "2004-06-11",
            "2007-01-02",
            "2012-10-29",
            "2012-10-30",
            "2018-12-05",
            "2025-01-09",
        ] {
            assert!(closed(day), "{day}");
        }
        assert!(!closed("2001-09-17"), "trading resumed on the 17th");
    }

    #[test]
    fn early_closes_end_at_one() {
        let close = |d: &str| NYSE.session(d.parse().unwrap()).unwrap().unwrap().close;
        for day in [
            "2000-07-03",
            "2002-07-05",
            "2003-12-26",
            "2013-07-03",
            "2019-07-03",
            "2020-11-27",
            "2024-12-24",
        ] {
            assert_eq!(close(day), early_close(), "{day}");
        }
        assert_eq!(
            close("2014-07-03"),
            early_close(),
            "Thursday before the 4th"
        );
        assert_eq!(
            close("2019-07-05"),
            regular_close(),
            "Friday after the 4th from 2013"
        );
        assert_eq!(close("2020-12-31"), regular_close());
    }

    #[test]
    fn years_outside_the_rules_are_unknown_and_gaps_count_sessions() {
        assert_eq!(NYSE.session(ymd(1999, 12, 31)), None);
        assert_eq!(NYSE.session(ymd(2027, 1, 4)), None);
        // Thursday 2024-03-28 → Tuesday 2024-04-02: Good Friday and the weekend are closed,
        // Monday 1 April is a session.
        assert_eq!(
            NYSE.sessions_between(ymd(2024, 3, 28), ymd(2024, 4, 2)),
            Some(vec![ymd(2024, 4, 1)])
        );
        // About 252 sessions a year.
        let sessions = NYSE
            .sessions_between(ymd(2018, 12, 31), ymd(2020, 1, 1))
            .unwrap();
        assert_eq!(sessions.len(), 252);
    }
}
