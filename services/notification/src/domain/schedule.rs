//! Time rules: bars of a timeframe (once-per-bar frequencies), quiet hours and digest times in
//! the user's time zone.

use chrono::{DateTime, Datelike as _, Duration, NaiveDate, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use mirai_proto::stock::v1::Timeframe;

/// US equity sessions, which define daily and coarser bars.
const EXCHANGE_TZ: Tz = chrono_tz::America::New_York;

/// Start of the bar of `timeframe` containing `at`: minutes and hours on the UTC clock, days,
/// weeks (from Monday) and months on the exchange's calendar.
pub fn bar_start(timeframe: Timeframe, at: DateTime<Utc>) -> DateTime<Utc> {
    let minutes = match timeframe {
        Timeframe::OneMinute => Some(1),
        Timeframe::FiveMinutes => Some(5),
        Timeframe::FifteenMinutes => Some(15),
        Timeframe::ThirtyMinutes => Some(30),
        Timeframe::OneHour => Some(60),
        _ => None,
    };
    if let Some(m) = minutes {
        let step = m * 60;
        let secs = at.timestamp().div_euclid(step) * step;
        return DateTime::from_timestamp(secs, 0).unwrap_or(at);
    }
    let local = at.with_timezone(&EXCHANGE_TZ).date_naive();
    let day = match timeframe {
        Timeframe::OneWeek => local - Duration::days(local.weekday().num_days_from_monday() as i64),
        Timeframe::OneMonth => local.with_day(1).unwrap_or(local),
        _ => local,
    };
    local_midnight(EXCHANGE_TZ, day)
}

fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    local_at(tz, day, NaiveTime::MIN)
}

/// `day` at `time` in `tz`, as UTC. A time inside a spring-forward gap moves past it; an
/// ambiguous time (fall back) takes the earlier instant.
pub fn local_at(tz: Tz, day: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = day.and_time(time);
    for shift in 0..4 {
        let candidate = naive + Duration::minutes(30 * shift);
        if let Some(t) = tz.from_local_datetime(&candidate).earliest() {
            return t.with_timezone(&Utc);
        }
    }
    Utc.from_utc_datetime(&naive)
}

/// Parses "HH:MM".
pub fn parse_hhmm(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

/// A daily quiet period in a time zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub tz: Tz,
}

impl QuietHours {
    /// When the quiet period containing `at` ends, or `None` when `at` is not inside one.
    pub fn ends_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.start == self.end {
            return None;
        }
        let local = at.with_timezone(&self.tz);
        let today = local.date_naive();
        let time = local.time();
        if self.start < self.end {
            (time >= self.start && time < self.end).then(|| local_at(self.tz, today, self.end))
        } else if time >= self.start {
            // Wraps past midnight: ends tomorrow.
            Some(local_at(self.tz, today + Duration::days(1), self.end))
        } else if time < self.end {
            Some(local_at(self.tz, today, self.end))
        } else {
            None
        }
    }
}

/// How often digests go out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DigestSchedule {
    Hourly,
    /// Daily at a local time.
    Daily {
        at: NaiveTime,
        tz: Tz,
    },
}

impl DigestSchedule {
    /// The next digest time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Self::Hourly => {
                let secs = (now.timestamp().div_euclid(3600) + 1) * 3600;
                DateTime::from_timestamp(secs, 0).unwrap_or(now)
            }
            Self::Daily { at, tz } => {
                let today = now.with_timezone(&tz).date_naive();
                let candidate = local_at(tz, today, at);
                if candidate > now {
                    candidate
                } else {
                    local_at(tz, today + Duration::days(1), at)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn bars_of_each_timeframe() {
        let t = at("2026-03-10T14:37:21Z");
        assert_eq!(
            bar_start(Timeframe::FiveMinutes, t),
            at("2026-03-10T14:35:00Z")
        );
        assert_eq!(bar_start(Timeframe::OneHour, t), at("2026-03-10T14:00:00Z"));
        // 2026-03-10 is a Tuesday; New York is on EDT (UTC-4) after 2026-03-08.
        assert_eq!(bar_start(Timeframe::OneDay, t), at("2026-03-10T04:00:00Z"));
        assert_eq!(bar_start(Timeframe::OneWeek, t), at("2026-03-09T04:00:00Z"));
        assert_eq!(
            bar_start(Timeframe::OneMonth, t),
            at("2026-03-01T05:00:00Z")
        );
        // 01:00 UTC is still the previous day in New York.
        assert_eq!(
            bar_start(Timeframe::OneDay, at("2026-03-11T01:00:00Z")),
            at("2026-03-10T04:00:00Z")
        );
    }

    #[test]
    fn quiet_hours_in_the_users_time_zone_wrap_past_midnight() {
        let q = QuietHours {
            start: parse_hhmm("22:00").unwrap(),
            end: parse_hhmm("07:00").unwrap(),
            tz: chrono_tz::Asia::Tokyo,
        };
        // 23:30 in Tokyo (14:30 UTC) is quiet until 07:00 Tokyo the next day (22:00 UTC).
        assert_eq!(
            q.ends_after(at("2026-05-01T14:30:00Z")),
            Some(at("2026-05-01T22:00:00Z"))
        );
        // 05:00 Tokyo (20:00 UTC the day before) ends the same morning.
        assert_eq!(
            q.ends_after(at("2026-04-30T20:00:00Z")),
            Some(at("2026-04-30T22:00:00Z"))
        );
        // Noon in Tokyo is not quiet.
        assert_eq!(q.ends_after(at("2026-05-01T03:00:00Z")), None);
        let day = QuietHours {
            start: parse_hhmm("09:00").unwrap(),
            end: parse_hhmm("17:00").unwrap(),
            tz: chrono_tz::UTC,
        };
        assert_eq!(day.ends_after(at("2026-05-01T17:00:00Z")), None);
        assert_eq!(
            day.ends_after(at("2026-05-01T09:00:00Z")),
            Some(at("2026-05-01T17:00:00Z"))
        );
    }

    #[test]
    fn digest_times() {
        assert_eq!(
            DigestSchedule::Hourly.next_after(at("2026-05-01T10:00:00Z")),
            at("2026-05-01T11:00:00Z")
        );
        let daily = DigestSchedule::Daily {
            at: parse_hhmm("08:00").unwrap(),
            tz: chrono_tz::Europe::Berlin,
        };
        // 08:00 in Berlin is 06:00 UTC in summer.
        assert_eq!(
            daily.next_after(at("2026-07-01T05:00:00Z")),
            at("2026-07-01T06:00:00Z")
        );
        assert_eq!(
            daily.next_after(at("2026-07-01T06:00:00Z")),
            at("2026-07-02T06:00:00Z")
        );
    }
}
