//! Exchanges (time zones and regular sessions) and a `GetBars` request.

use chrono::{DateTime, Utc};
use mirai_platform::wire;
use mirai_proto::stock::v1 as pb;

use super::{DomainError, Ticker};

/// Where an exchange trades: its IANA time zone and regular session (local times).
pub struct Exchange {
    pub mic: &'static str,
    pub time_zone: &'static str,
    pub open: &'static str,
    pub close: &'static str,
}

pub const EXCHANGES: &[Exchange] = &[
    Exchange {
        mic: "XNYS",
        time_zone: "America/New_York",
        open: "09:30",
        close: "16:00",
    },
    Exchange {
        mic: "XNAS",
        time_zone: "America/New_York",
        open: "09:30",
        close: "16:00",
    },
];

/// The time zone bars of an exchange are bucketed in (UTC for exchanges not in the table).
pub fn time_zone(mic: &str) -> &'static str {
    EXCHANGES
        .iter()
        .find(|e| e.mic == mic)
        .map_or("UTC", |e| e.time_zone)
}

/// Timeframes and how coarser ones are built from finer stored ones.
pub fn source_timeframe(requested: pb::Timeframe) -> &'static [pb::Timeframe] {
    use pb::Timeframe::*;
    match requested {
        OneWeek | OneMonth => &[OneDay],
        OneDay => &[OneDay, OneMinute],
        FiveMinutes | FifteenMinutes | ThirtyMinutes | OneHour => &[OneMinute],
        OneMinute => &[OneMinute],
        Unspecified => &[],
    }
}

/// A validated `GetBars` request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Query {
    pub ticker: Ticker,
    pub timeframe: pb::Timeframe,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub limit: u32,
    /// Keyset: the bucket start after (or, newest first, before) which the page begins.
    pub after: Option<DateTime<Utc>>,
    pub newest_first: bool,
}

impl Query {
    pub fn parse(request: &pb::GetBarsRequest) -> Result<Self, QueryError> {
        let timeframe = match pb::Timeframe::try_from(request.timeframe) {
            Ok(pb::Timeframe::Unspecified) => pb::Timeframe::OneDay,
            Ok(timeframe) => timeframe,
            Err(_) => return Err(DomainError::invalid("timeframe", "unknown timeframe").into()),
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
            return Err(DomainError::invalid("end", "must not be before start").into());
        }
        if !matches!(
            pb::Adjustment::try_from(request.adjustment),
            Ok(pb::Adjustment::Unspecified | pb::Adjustment::Raw)
        ) {
            return Err(DomainError::Unsupported(
                "only raw (unadjusted) bars are stored; no corporate actions are known to adjust them"
                    .into(),
            )
            .into());
        }
        if request.include_partial {
            return Err(QueryError::PartialBars);
        }
        let after = match super::page_after(&request.page_token)?.as_str() {
            "" => None,
            key => Some(
                DateTime::parse_from_rfc3339(key)
                    .map_err(|_| DomainError::invalid("page_token", "not a token from this API"))?
                    .with_timezone(&Utc),
            ),
        };
        Ok(Self {
            ticker: Ticker::parse(&request.symbol)?,
            timeframe,
            start,
            end,
            limit: super::page_size(request.limit, 1000, 10_000)?,
            after,
            newest_first: request.newest_first,
        })
    }
}

/// Why a `GetBars` request cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Bars still forming were asked for (`UNIMPLEMENTED`, which the platform's vocabulary
    /// does not have: the gRPC layer says it).
    #[error("include_partial needs live collection, which is not running")]
    PartialBars,
}
