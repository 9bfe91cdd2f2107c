//! REST shapes several route groups share: one definition each, so the OpenAPI document
//! publishes one schema for one thing.

use mirai_proto::stock::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Bar intervals, named as Alpaca names them.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub enum Timeframe {
    #[serde(rename = "1Min")]
    OneMinute,
    #[serde(rename = "5Min")]
    FiveMinutes,
    #[serde(rename = "15Min")]
    FifteenMinutes,
    #[serde(rename = "30Min")]
    ThirtyMinutes,
    #[serde(rename = "1Hour")]
    OneHour,
    #[serde(rename = "1Day")]
    OneDay,
    #[serde(rename = "1Week")]
    OneWeek,
    #[serde(rename = "1Month")]
    OneMonth,
}

impl From<Timeframe> for pb::Timeframe {
    fn from(value: Timeframe) -> Self {
        match value {
            Timeframe::OneMinute => Self::OneMinute,
            Timeframe::FiveMinutes => Self::FiveMinutes,
            Timeframe::FifteenMinutes => Self::FifteenMinutes,
            Timeframe::ThirtyMinutes => Self::ThirtyMinutes,
            Timeframe::OneHour => Self::OneHour,
            Timeframe::OneDay => Self::OneDay,
            Timeframe::OneWeek => Self::OneWeek,
            Timeframe::OneMonth => Self::OneMonth,
        }
    }
}

impl Timeframe {
    pub fn to_wire(self) -> i32 {
        pb::Timeframe::from(self).into()
    }

    /// The wire value as a REST timeframe; an unknown or unset one reads as `1Day`, the
    /// default everywhere a timeframe is optional.
    pub fn from_wire(value: i32) -> Self {
        match pb::Timeframe::try_from(value) {
            Ok(pb::Timeframe::OneMinute) => Self::OneMinute,
            Ok(pb::Timeframe::FiveMinutes) => Self::FiveMinutes,
            Ok(pb::Timeframe::FifteenMinutes) => Self::FifteenMinutes,
            Ok(pb::Timeframe::ThirtyMinutes) => Self::ThirtyMinutes,
            Ok(pb::Timeframe::OneHour) => Self::OneHour,
            Ok(pb::Timeframe::OneWeek) => Self::OneWeek,
            Ok(pb::Timeframe::OneMonth) => Self::OneMonth,
            _ => Self::OneDay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timeframe_survives_the_wire() {
        for timeframe in [
            Timeframe::OneMinute,
            Timeframe::FiveMinutes,
            Timeframe::FifteenMinutes,
            Timeframe::ThirtyMinutes,
            Timeframe::OneHour,
            Timeframe::OneDay,
            Timeframe::OneWeek,
            Timeframe::OneMonth,
        ] {
            assert_eq!(Timeframe::from_wire(timeframe.to_wire()), timeframe);
        }
        assert_eq!(Timeframe::from_wire(0), Timeframe::OneDay);
        assert_eq!(Timeframe::from_wire(999), Timeframe::OneDay);
    }
}
