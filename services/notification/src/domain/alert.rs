//! Alert rules: status, frequency, and the decision whether an evaluation fires.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mirai_proto::notification::v1 as pb;
use mirai_proto::stock::v1::Timeframe;

use super::condition::{Arm, Condition, Inputs};
use super::schedule::bar_start;

/// Lifecycle of an alert (stored as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active,
    Triggered,
    Rejected,
    Expired,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Active => "ACTIVE",
            Self::Triggered => "TRIGGERED",
            Self::Rejected => "REJECTED",
            Self::Expired => "EXPIRED",
            Self::Disabled => "DISABLED",
        }
    }

    pub fn to_proto(self) -> pb::AlertStatus {
        match self {
            Self::Pending => pb::AlertStatus::Pending,
            Self::Active => pb::AlertStatus::Active,
            Self::Triggered => pb::AlertStatus::Triggered,
            Self::Rejected => pb::AlertStatus::Rejected,
            Self::Expired => pb::AlertStatus::Expired,
            Self::Disabled => pb::AlertStatus::Disabled,
        }
    }

    pub fn from_proto(status: pb::AlertStatus) -> Option<Self> {
        Some(match status {
            pb::AlertStatus::Unspecified => return None,
            pb::AlertStatus::Pending => Self::Pending,
            pb::AlertStatus::Active => Self::Active,
            pb::AlertStatus::Triggered => Self::Triggered,
            pb::AlertStatus::Rejected => Self::Rejected,
            pb::AlertStatus::Expired => Self::Expired,
            pb::AlertStatus::Disabled => Self::Disabled,
        })
    }

    /// PENDING and ACTIVE alerts count against the limit and may hold tracking.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Active)
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "PENDING" => Self::Pending,
            "ACTIVE" => Self::Active,
            "TRIGGERED" => Self::Triggered,
            "REJECTED" => Self::Rejected,
            "EXPIRED" => Self::Expired,
            "DISABLED" => Self::Disabled,
            other => return Err(format!("unknown alert status {other}")),
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How often an alert may fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Once,
    OncePerBar,
    OncePerBarClose,
    EveryTime,
}

impl Frequency {
    pub fn from_proto(value: i32) -> Option<Self> {
        Some(match pb::Frequency::try_from(value).ok()? {
            pb::Frequency::Unspecified | pb::Frequency::Once => Self::Once,
            pb::Frequency::OncePerBar => Self::OncePerBar,
            pb::Frequency::OncePerBarClose => Self::OncePerBarClose,
            pb::Frequency::EveryTime => Self::EveryTime,
        })
    }

    pub fn to_proto(self) -> pb::Frequency {
        match self {
            Self::Once => pb::Frequency::Once,
            Self::OncePerBar => pb::Frequency::OncePerBar,
            Self::OncePerBarClose => pb::Frequency::OncePerBarClose,
            Self::EveryTime => pb::Frequency::EveryTime,
        }
    }
}

/// Shortest and default cool-down of EVERY_TIME alerts.
pub const MIN_COOLDOWN: Duration = Duration::from_secs(60);
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(3600);

/// What a rule needs to decide (the persisted part of an alert that changes when it fires).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    pub arm: Arm,
    pub move_ref_at: Option<DateTime<Utc>>,
    pub last_fired_bar: Option<DateTime<Utc>>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub trigger_count: u32,
}

/// The rule of an alert, as the evaluator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub condition: Condition,
    pub frequency: Frequency,
    pub timeframe: Timeframe,
    pub cooldown: Duration,
}

/// What caused an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `stock.price.updated`.
    Price,
    /// `stock.bar.closed` of this timeframe.
    BarClose(Timeframe),
    /// `prediction.generated`.
    Forecast,
}

/// The decision of one evaluation: the state to store and whether to fire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub state: State,
    pub fire: bool,
    /// When it fires on a price: the price that met the condition (see
    /// [`super::condition::Outcome::price`]).
    pub price: Option<f64>,
}

impl Rule {
    /// Whether an event of this kind is evaluated at all.
    pub fn listens_to(&self, cause: Cause) -> bool {
        match cause {
            Cause::Price => {
                self.frequency != Frequency::OncePerBarClose && self.condition.watches_price()
            }
            Cause::BarClose(tf) => {
                self.frequency == Frequency::OncePerBarClose
                    && tf == self.timeframe
                    && self.condition.watches_price()
            }
            Cause::Forecast => self.condition.is_forecast(),
        }
    }

    /// Evaluates on `inputs` observed `at`, from `state`. A firing the frequency does not
    /// allow (same bar, cool-down) still consumes the crossing: it disarms, so it cannot fire
    /// late.
    pub fn decide(
        &self,
        state: State,
        inputs: &Inputs,
        cause: Cause,
        at: DateTime<Utc>,
    ) -> Decision {
        if !self.listens_to(cause) {
            return Decision {
                state,
                fire: false,
                price: None,
            };
        }
        let outcome = self.condition.evaluate(state.arm, inputs);
        let mut next = State {
            arm: outcome.arm,
            ..state
        };
        if !outcome.fired {
            return Decision {
                state: next,
                fire: false,
                price: None,
            };
        }
        if self.condition.window().is_some() {
            // The next move is measured from here.
            next.move_ref_at = Some(at);
        }
        let bar = bar_start(self.timeframe, at);
        let allowed = match self.frequency {
            Frequency::Once => state.trigger_count == 0,
            Frequency::OncePerBar | Frequency::OncePerBarClose => state.last_fired_bar != Some(bar),
            Frequency::EveryTime => state
                .last_triggered_at
                .is_none_or(|last| (at - last).to_std().unwrap_or_default() >= self.cooldown),
        };
        if allowed {
            next.last_fired_bar = Some(bar);
            next.last_triggered_at = Some(at);
            next.trigger_count = state.trigger_count.saturating_add(1);
        }
        Decision {
            state: next,
            fire: allowed,
            price: outcome.price.filter(|_| allowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::condition::Observation;
    use super::*;

    fn rule(frequency: Frequency) -> Rule {
        Rule {
            condition: Condition::parse(&pb::Condition {
                kind: Some(pb::condition::Kind::Above(pb::PriceLevel { price: 10.0 })),
                hysteresis_percent: 0.0,
            })
            .unwrap(),
            frequency,
            timeframe: Timeframe::OneHour,
            cooldown: Duration::from_secs(600),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// Alternates 11 (fires when armed) and 9 (re-arms), returning the fire times.
    fn run(rule: &Rule, cause: Cause, times: &[&str]) -> Vec<usize> {
        let mut state = State {
            arm: rule.condition.initial_arm(),
            ..State::default()
        };
        let mut fired = Vec::new();
        for (i, t) in times.iter().enumerate() {
            for price in [11.0, 9.0] {
                let inputs = Inputs {
                    observation: Some(Observation::at(price)),
                    ..Inputs::default()
                };
                let d = rule.decide(state, &inputs, cause, at(t));
                state = d.state;
                if d.fire {
                    fired.push(i);
                }
            }
        }
        fired
    }

    const TIMES: &[&str] = &[
        "2026-01-05T15:00:00Z",
        "2026-01-05T15:05:00Z",
        "2026-01-05T15:20:00Z",
        "2026-01-05T16:01:00Z",
    ];

    #[test]
    fn frequencies_cap_how_often_a_rule_fires() {
        assert_eq!(run(&rule(Frequency::Once), Cause::Price, TIMES), [0]);
        assert_eq!(
            run(&rule(Frequency::OncePerBar), Cause::Price, TIMES),
            [0, 3]
        );
        // Cool-down 10 minutes: 15:05 is inside it, 15:20 is not.
        assert_eq!(
            run(&rule(Frequency::EveryTime), Cause::Price, TIMES),
            [0, 2, 3]
        );
    }

    #[test]
    fn bar_close_rules_only_hear_their_bars() {
        let r = rule(Frequency::OncePerBarClose);
        assert!(run(&r, Cause::Price, TIMES).is_empty());
        assert!(run(&r, Cause::BarClose(Timeframe::OneDay), TIMES).is_empty());
        assert_eq!(run(&r, Cause::BarClose(Timeframe::OneHour), TIMES), [0, 3]);
        assert!(!r.listens_to(Cause::Forecast));
    }
}
