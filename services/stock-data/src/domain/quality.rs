//! A `GetQualityReport` request.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1::{self as pb, Timeframe};

use super::{DomainError, Ticker};

/// A validated `GetQualityReport` request.
pub struct ReportQuery {
    pub ticker: Ticker,
    pub timeframe: Timeframe,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub max_issues: u32,
    /// Keyset: issues after (bar start, flag).
    pub after: Option<(DateTime<Utc>, i16)>,
}

impl ReportQuery {
    pub fn parse(request: &pb::GetQualityReportRequest) -> Result<Self, DomainError> {
        let timeframe = match Timeframe::try_from(request.timeframe) {
            Ok(Timeframe::Unspecified) => Timeframe::OneDay,
            Ok(timeframe) => timeframe,
            Err(_) => return Err(DomainError::invalid("timeframe", "unknown timeframe")),
        };
        let instant = |field: &'static str, ts: &Option<prost_types::Timestamp>| {
            ts.as_ref()
                .map(|ts| {
                    wire::datetime(ts).ok_or_else(|| DomainError::invalid(field, "out of range"))
                })
                .transpose()
        };
        let (start, end) = (
            instant("start", &request.start)?,
            instant("end", &request.end)?,
        );
        if let (Some(start), Some(end)) = (start, end)
            && end < start
        {
            return Err(DomainError::invalid("end", "must not be before start"));
        }
        let after = match super::page_after(&request.page_token)?.as_str() {
            "" => None,
            key => {
                let bad = || DomainError::invalid("page_token", "not a token from this API");
                let (at, flag) = key.rsplit_once('|').ok_or_else(bad)?;
                Some((
                    DateTime::parse_from_rfc3339(at)
                        .map_err(|_| bad())?
                        .with_timezone(&Utc),
                    flag.parse().map_err(|_| bad())?,
                ))
            }
        };
        Ok(Self {
            ticker: Ticker::parse(&request.symbol)?,
            timeframe,
            start,
            end,
            max_issues: wire::page_size(request.max_issues, 1000, 10_000)
                .map_err(|_| DomainError::invalid("max_issues", "must be 1-10000"))?,
            after,
        })
    }
}
