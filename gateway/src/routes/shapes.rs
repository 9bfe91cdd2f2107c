//! REST shapes several route groups share, or that the document itself registers: one
//! definition each, so the OpenAPI document publishes one schema for one thing. The bar
//! `Timeframe` (market data, alerts, analytics), the `ModelRef` naming a model version
//! (predictions, analytics reports) and the `Maturity` of a stored prediction (a query
//! parameter's type, registered by [`crate::openapi`]).

use mirai_proto::prediction::v1 as prediction_pb;
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

/// A model version, e.g. `spx-lstm` / `1.0.0`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
}

impl From<prediction_pb::ModelRef> for ModelRef {
    fn from(m: prediction_pb::ModelRef) -> Self {
        Self {
            name: m.name,
            version: m.version,
        }
    }
}

impl From<ModelRef> for prediction_pb::ModelRef {
    fn from(m: ModelRef) -> Self {
        Self {
            name: m.name,
            version: m.version,
        }
    }
}

/// Scoring state of a stored prediction.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Maturity {
    Matured,
    Pending,
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
