//! Delivery preferences: per channel and category switches, quiet hours, digests, and the
//! decision what happens to one delivery.

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use mirai_proto::notification::v1 as pb;

use super::schedule::{DigestSchedule, QuietHours, parse_hhmm};

/// Why preferences from the wire are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct PreferenceError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> PreferenceError {
    PreferenceError {
        field,
        problem: problem.into(),
    }
}

pub fn parse_tz(name: &str) -> Option<Tz> {
    name.parse().ok()
}

/// Checks preferences before they are stored.
pub fn validate(p: &pb::Preferences) -> Result<(), PreferenceError> {
    for c in &p.channels {
        if !matches!(pb::Channel::try_from(c.channel), Ok(ch) if ch != pb::Channel::Unspecified) {
            return Err(bad("preferences.channels.channel", "unknown channel"));
        }
        if !matches!(pb::Category::try_from(c.category), Ok(cat) if cat != pb::Category::Unspecified)
        {
            return Err(bad("preferences.channels.category", "unknown category"));
        }
    }
    if let Some(q) = &p.quiet_hours
        && q.enabled
    {
        if parse_hhmm(&q.start).is_none() {
            return Err(bad("preferences.quiet_hours.start", "expected HH:MM"));
        }
        if parse_hhmm(&q.end).is_none() {
            return Err(bad("preferences.quiet_hours.end", "expected HH:MM"));
        }
        if !q.time_zone.is_empty() && parse_tz(&q.time_zone).is_none() {
            return Err(bad(
                "preferences.quiet_hours.time_zone",
                format!("unknown IANA time zone {:?}", q.time_zone),
            ));
        }
    }
    if let Some(d) = &p.digest {
        if pb::DigestFrequency::try_from(d.frequency).is_err() {
            return Err(bad("preferences.digest.frequency", "unknown frequency"));
        }
        if !d.deliver_at.is_empty() && parse_hhmm(&d.deliver_at).is_none() {
            return Err(bad("preferences.digest.deliver_at", "expected HH:MM"));
        }
        if d.categories
            .iter()
            .any(|c| pb::Category::try_from(*c).is_err())
        {
            return Err(bad("preferences.digest.categories", "unknown category"));
        }
    }
    if !p.email.is_empty() && p.email.parse::<lettre::Address>().is_err() {
        return Err(bad("preferences.email", "not an email address"));
    }
    Ok(())
}

/// What happens to one delivery when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Attempt now.
    Now,
    /// Turned off by the user.
    Suppressed,
    /// Held until then (quiet hours); `digest` when bundled into the user's digest.
    Deferred { until: DateTime<Utc>, digest: bool },
}

/// Preferences resolved against the user's profile.
#[derive(Debug, Clone)]
pub struct Resolved {
    switches: Vec<(pb::Channel, pb::Category, bool)>,
    quiet: Option<QuietHours>,
    digest: Option<(DigestSchedule, Vec<pb::Category>)>,
}

impl Resolved {
    /// `profile_tz` is the profile's IANA zone (UTC when unknown); `default_at` the daily
    /// digest time when the preferences do not say.
    pub fn new(p: &pb::Preferences, profile_tz: &str, default_at: NaiveTime) -> Self {
        let profile_tz = parse_tz(profile_tz).unwrap_or(chrono_tz::UTC);
        let zone = |name: &str| parse_tz(name).unwrap_or(profile_tz);
        let quiet = p.quiet_hours.as_ref().filter(|q| q.enabled).and_then(|q| {
            Some(QuietHours {
                start: parse_hhmm(&q.start)?,
                end: parse_hhmm(&q.end)?,
                tz: zone(&q.time_zone),
            })
        });
        let tz = p
            .quiet_hours
            .as_ref()
            .map_or(profile_tz, |q| zone(&q.time_zone));
        let digest = p.digest.as_ref().and_then(|d| {
            let schedule = match pb::DigestFrequency::try_from(d.frequency).ok()? {
                pb::DigestFrequency::Hourly => DigestSchedule::Hourly,
                pb::DigestFrequency::Daily => DigestSchedule::Daily {
                    at: parse_hhmm(&d.deliver_at).unwrap_or(default_at),
                    tz,
                },
                _ => return None,
            };
            let categories = d
                .categories
                .iter()
                .filter_map(|c| pb::Category::try_from(*c).ok())
                .collect();
            Some((schedule, categories))
        });
        Self {
            switches: p
                .channels
                .iter()
                .filter_map(|c| {
                    Some((
                        pb::Channel::try_from(c.channel).ok()?,
                        pb::Category::try_from(c.category).ok()?,
                        c.enabled,
                    ))
                })
                .collect(),
            quiet,
            digest,
        }
    }

    /// Whether `channel` delivers `category` (default: yes).
    pub fn enabled(&self, channel: pb::Channel, category: pb::Category) -> bool {
        self.switches
            .iter()
            .rev()
            .find(|(ch, cat, _)| *ch == channel && *cat == category)
            .is_none_or(|(_, _, on)| *on)
    }

    /// The plan for a delivery on `channel` of a notification of `category` created `now`.
    /// Critical notifications bypass everything; in-app is never delayed.
    pub fn plan(
        &self,
        channel: pb::Channel,
        category: pb::Category,
        critical: bool,
        now: DateTime<Utc>,
    ) -> Plan {
        if critical {
            return Plan::Now;
        }
        if !self.enabled(channel, category) {
            return Plan::Suppressed;
        }
        if channel == pb::Channel::InApp {
            return Plan::Now;
        }
        let quiet_end = |t: DateTime<Utc>| self.quiet.and_then(|q| q.ends_after(t));
        if let Some((schedule, categories)) = &self.digest
            && category != pb::Category::Digest
            && (categories.is_empty() || categories.contains(&category))
        {
            let at = schedule.next_after(now);
            return Plan::Deferred {
                until: quiet_end(at).unwrap_or(at),
                digest: true,
            };
        }
        match quiet_end(now) {
            Some(until) => Plan::Deferred {
                until,
                digest: false,
            },
            None => Plan::Now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn prefs() -> pb::Preferences {
        pb::Preferences {
            channels: vec![pb::ChannelPreference {
                channel: pb::Channel::Email.into(),
                category: pb::Category::ForecastAlert.into(),
                enabled: false,
            }],
            quiet_hours: Some(pb::QuietHours {
                enabled: true,
                start: "22:00".into(),
                end: "07:00".into(),
                time_zone: String::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn quiet_hours_defer_and_critical_bypasses() {
        let r = Resolved::new(&prefs(), "America/New_York", NaiveTime::MIN);
        // 23:00 in New York (03:00 UTC): quiet until 07:00 New York (11:00 UTC).
        let night = at("2026-06-02T03:00:00Z");
        assert_eq!(
            r.plan(pb::Channel::Email, pb::Category::PriceAlert, false, night),
            Plan::Deferred {
                until: at("2026-06-02T11:00:00Z"),
                digest: false
            }
        );
        assert_eq!(
            r.plan(pb::Channel::Email, pb::Category::System, true, night),
            Plan::Now
        );
        assert_eq!(
            r.plan(pb::Channel::InApp, pb::Category::PriceAlert, false, night),
            Plan::Now,
            "in-app is stored at once"
        );
        assert_eq!(
            r.plan(
                pb::Channel::Email,
                pb::Category::ForecastAlert,
                false,
                night
            ),
            Plan::Suppressed
        );
        assert_eq!(
            r.plan(
                pb::Channel::Email,
                pb::Category::PriceAlert,
                false,
                at("2026-06-02T16:00:00Z")
            ),
            Plan::Now
        );
    }

    #[test]
    fn digests_hold_their_categories() {
        let mut p = prefs();
        p.quiet_hours = None;
        p.digest = Some(pb::Digest {
            frequency: pb::DigestFrequency::Hourly.into(),
            deliver_at: String::new(),
            categories: vec![pb::Category::AlertStatus.into()],
        });
        let r = Resolved::new(&p, "UTC", NaiveTime::MIN);
        let now = at("2026-06-02T10:15:00Z");
        assert_eq!(
            r.plan(pb::Channel::Webhook, pb::Category::AlertStatus, false, now),
            Plan::Deferred {
                until: at("2026-06-02T11:00:00Z"),
                digest: true
            }
        );
        assert_eq!(
            r.plan(pb::Channel::Webhook, pb::Category::PriceAlert, false, now),
            Plan::Now
        );
    }

    #[test]
    fn bad_preferences_name_the_field() {
        let mut p = prefs();
        p.quiet_hours.as_mut().unwrap().time_zone = "Mars/Olympus".into();
        assert_eq!(
            validate(&p).unwrap_err().field,
            "preferences.quiet_hours.time_zone"
        );
        let mut p = prefs();
        p.email = "not-an-address".into();
        assert_eq!(validate(&p).unwrap_err().field, "preferences.email");
        assert!(validate(&prefs()).is_ok());
    }
}
