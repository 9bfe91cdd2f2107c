//! An alert's condition: what it watches and the parameters each kind needs, and its wire
//! form.

use mirai_proto::notification::v1 as pb;
use pb::condition::Kind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::problem::Problem;

/// What a condition watches.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// The price crosses `level` in either direction.
    Crossing,
    /// The price crosses `level` from below.
    CrossingUp,
    /// The price crosses `level` from above.
    CrossingDown,
    /// The price is above `level` (fires on entry, re-arms when it falls back).
    Above,
    /// The price is below `level`.
    Below,
    /// The price moves into [`lower`, `upper`].
    EnteringChannel,
    /// The price moves out of [`lower`, `upper`].
    ExitingChannel,
    /// The price rises by `amount` or `percent` within `window_seconds`.
    MovingUp,
    /// The price falls by `amount` or `percent` within `window_seconds`.
    MovingDown,
    /// The price leaves the champion forecast's prediction interval (`side`).
    ForecastIntervalExit,
    /// The forecast's probability of an up move is at least `threshold`.
    ProbabilityUpAtLeast,
    /// The point forecast crosses the current price (`direction`).
    ForecastCrossesPrice,
}

/// Which side of the forecast interval counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Above,
    Below,
    Either,
}

/// Which crossing direction counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Either,
}

/// A condition: its `kind` and the parameters that kind needs (the same shape as in the
/// public price-alert events).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"kind": "crossing_up", "level": 150.0, "hysteresis_percent": 0.1}))]
pub struct Condition {
    pub kind: ConditionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// 60 – 31,536,000 (one minute to 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    /// In (0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// After firing, the price must move back beyond the level by this percentage before the
    /// condition re-arms (jitter around a level does not fire again). Default 0.
    #[serde(default)]
    pub hysteresis_percent: f64,
}

fn need(value: Option<f64>, field: &str) -> Result<f64, Problem> {
    value.ok_or_else(|| Problem::invalid(format!("condition.{field} is required for this kind")))
}

impl Condition {
    pub fn to_wire(&self) -> Result<pb::Condition, Problem> {
        let level = |c: &Self| need(c.level, "level").map(|price| pb::PriceLevel { price });
        let channel = |c: &Self| {
            Ok::<_, Problem>(pb::PriceChannel {
                lower: need(c.lower, "lower")?,
                upper: need(c.upper, "upper")?,
            })
        };
        let price_move = |c: &Self| {
            let size = match (c.amount, c.percent) {
                (Some(a), None) => pb::price_move::Size::Amount(a),
                (None, Some(p)) => pb::price_move::Size::Percent(p),
                _ => {
                    return Err(Problem::invalid(
                        "condition: exactly one of amount and percent",
                    ));
                }
            };
            let window = c.window_seconds.ok_or_else(|| {
                Problem::invalid("condition.window_seconds is required for this kind")
            })?;
            Ok(pb::PriceMove {
                size: Some(size),
                window: Some(prost_types::Duration {
                    seconds: i64::try_from(window).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
            })
        };
        let kind = match self.kind {
            ConditionKind::Crossing => Kind::Crossing(level(self)?),
            ConditionKind::CrossingUp => Kind::CrossingUp(level(self)?),
            ConditionKind::CrossingDown => Kind::CrossingDown(level(self)?),
            ConditionKind::Above => Kind::Above(level(self)?),
            ConditionKind::Below => Kind::Below(level(self)?),
            ConditionKind::EnteringChannel => Kind::EnteringChannel(channel(self)?),
            ConditionKind::ExitingChannel => Kind::ExitingChannel(channel(self)?),
            ConditionKind::MovingUp => Kind::MovingUp(price_move(self)?),
            ConditionKind::MovingDown => Kind::MovingDown(price_move(self)?),
            ConditionKind::ForecastIntervalExit => {
                Kind::ForecastIntervalExit(pb::ForecastIntervalExit {
                    side: match self.side.unwrap_or(Side::Either) {
                        Side::Above => pb::IntervalSide::Above,
                        Side::Below => pb::IntervalSide::Below,
                        Side::Either => pb::IntervalSide::Unspecified,
                    }
                    .into(),
                })
            }
            ConditionKind::ProbabilityUpAtLeast => {
                Kind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold {
                    threshold: need(self.threshold, "threshold")?,
                })
            }
            ConditionKind::ForecastCrossesPrice => {
                Kind::ForecastCrossesPrice(pb::ForecastCrossesPrice {
                    direction: match self.direction.unwrap_or(Direction::Either) {
                        Direction::Up => pb::CrossDirection::Up,
                        Direction::Down => pb::CrossDirection::Down,
                        Direction::Either => pb::CrossDirection::Unspecified,
                    }
                    .into(),
                })
            }
        };
        Ok(pb::Condition {
            kind: Some(kind),
            hysteresis_percent: self.hysteresis_percent,
        })
    }

    pub fn from_wire(c: &pb::Condition) -> Option<Self> {
        let mut out = Self {
            kind: ConditionKind::Above,
            level: None,
            lower: None,
            upper: None,
            amount: None,
            percent: None,
            window_seconds: None,
            side: None,
            threshold: None,
            direction: None,
            hysteresis_percent: c.hysteresis_percent,
        };
        let set_move = |out: &mut Self, m: &pb::PriceMove| {
            match m.size {
                Some(pb::price_move::Size::Amount(a)) => out.amount = Some(a),
                Some(pb::price_move::Size::Percent(p)) => out.percent = Some(p),
                None => {}
            }
            out.window_seconds = m.window.map(|w| w.seconds.max(0) as u64);
        };
        match c.kind.as_ref()? {
            Kind::Crossing(l) => (out.kind, out.level) = (ConditionKind::Crossing, Some(l.price)),
            Kind::CrossingUp(l) => {
                (out.kind, out.level) = (ConditionKind::CrossingUp, Some(l.price));
            }
            Kind::CrossingDown(l) => {
                (out.kind, out.level) = (ConditionKind::CrossingDown, Some(l.price));
            }
            Kind::Above(l) => (out.kind, out.level) = (ConditionKind::Above, Some(l.price)),
            Kind::Below(l) => (out.kind, out.level) = (ConditionKind::Below, Some(l.price)),
            Kind::EnteringChannel(ch) => {
                (out.kind, out.lower, out.upper) = (
                    ConditionKind::EnteringChannel,
                    Some(ch.lower),
                    Some(ch.upper),
                );
            }
            Kind::ExitingChannel(ch) => {
                (out.kind, out.lower, out.upper) = (
                    ConditionKind::ExitingChannel,
                    Some(ch.lower),
                    Some(ch.upper),
                );
            }
            Kind::MovingUp(m) => {
                out.kind = ConditionKind::MovingUp;
                set_move(&mut out, m);
            }
            Kind::MovingDown(m) => {
                out.kind = ConditionKind::MovingDown;
                set_move(&mut out, m);
            }
            Kind::ForecastIntervalExit(f) => {
                out.kind = ConditionKind::ForecastIntervalExit;
                out.side = Some(match pb::IntervalSide::try_from(f.side) {
                    Ok(pb::IntervalSide::Above) => Side::Above,
                    Ok(pb::IntervalSide::Below) => Side::Below,
                    _ => Side::Either,
                });
            }
            Kind::ProbabilityUpAtLeast(p) => {
                (out.kind, out.threshold) =
                    (ConditionKind::ProbabilityUpAtLeast, Some(p.threshold));
            }
            Kind::ForecastCrossesPrice(f) => {
                out.kind = ConditionKind::ForecastCrossesPrice;
                out.direction = Some(match pb::CrossDirection::try_from(f.direction) {
                    Ok(pb::CrossDirection::Up) => Direction::Up,
                    Ok(pb::CrossDirection::Down) => Direction::Down,
                    _ => Direction::Either,
                });
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_round_trip_between_json_and_the_wire() {
        for json in [
            serde_json::json!({"kind": "crossing_up", "level": 150.0, "hysteresis_percent": 0.1}),
            serde_json::json!({"kind": "exiting_channel", "lower": 1.0, "upper": 2.0, "hysteresis_percent": 0.0}),
            serde_json::json!({"kind": "moving_down", "percent": 5.0, "window_seconds": 3600, "hysteresis_percent": 0.0}),
            serde_json::json!({"kind": "forecast_interval_exit", "side": "below", "hysteresis_percent": 0.0}),
            serde_json::json!({"kind": "probability_up_at_least", "threshold": 0.7, "hysteresis_percent": 0.0}),
        ] {
            let c: Condition = serde_json::from_value(json.clone()).unwrap();
            let back = Condition::from_wire(&c.to_wire().unwrap()).unwrap();
            assert_eq!(serde_json::to_value(back).unwrap(), json);
        }
        let missing: Condition =
            serde_json::from_value(serde_json::json!({"kind": "above"})).unwrap();
        let problem = missing.to_wire().unwrap_err();
        assert_eq!(problem.status, 400);
        assert!(problem.detail.unwrap().contains("condition.level"));
    }
}
