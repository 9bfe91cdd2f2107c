//! Time ranges of requests: inclusive start, exclusive end, either side open.

use chrono::{DateTime, Utc};
use mirai_platform::wire;

use super::DomainError;

/// `[start, end)`; `None` leaves that side open. Never inverted or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl Range {
    /// The range of a request's `start`/`end` fields. `end ≤ start` is an error naming `end`.
    pub fn from_wire(
        start: Option<&prost_types::Timestamp>,
        end: Option<&prost_types::Timestamp>,
    ) -> Result<Self, DomainError> {
        let read = |field: &'static str, ts: Option<&prost_types::Timestamp>| {
            ts.map(|ts| {
                wire::datetime(ts)
                    .ok_or_else(|| DomainError::new(field, "is not a valid timestamp"))
            })
            .transpose()
        };
        Self::new(read("start", start)?, read("end", end)?)
    }

    pub fn new(
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> Result<Self, DomainError> {
        if let (Some(s), Some(e)) = (start, end)
            && e <= s
        {
            return Err(DomainError::new(
                "end",
                format!(
                    "must be after start (the range {} – {} is inverted or empty)",
                    s.to_rfc3339(),
                    e.to_rfc3339()
                ),
            ));
        }
        Ok(Self { start, end })
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| at >= s) && self.end.is_none_or(|e| at < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64) -> prost_types::Timestamp {
        prost_types::Timestamp { seconds, nanos: 0 }
    }

    #[test]
    fn inverted_and_empty_ranges_name_the_end() {
        for (s, e) in [(10, 5), (10, 10)] {
            let err = Range::from_wire(Some(&ts(s)), Some(&ts(e))).unwrap_err();
            assert_eq!(err.field, "end");
            assert!(err.message.contains("inverted"), "{}", err.message);
        }
        let open = Range::from_wire(None, Some(&ts(5))).unwrap();
        assert!(open.contains(DateTime::from_timestamp(4, 0).unwrap()));
        assert!(!open.contains(DateTime::from_timestamp(5, 0).unwrap()));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(
            Range::from_wire(Some(&bad), None).unwrap_err().field,
            "start"
        );
    }
}
