//! Alert conditions: parsed from the wire once, then evaluated without I/O.
//!
//! Every condition is a small state machine over two persisted flags, `armed_up` and
//! `armed_down` (see [`Arm`]). A condition fires only while armed and disarms when it fires,
//! so one crossing fires once; it re-arms only after the price has moved back beyond the level
//! by the hysteresis (the Schmitt-trigger rule), so jitter around a level does not fire again.
//! The state lives in the alert's row and changes in the same transaction as the inbox row
//! of the event that changed it: a redelivered event, a restart or a second replica sees the
//! state after the first evaluation and cannot fire the same crossing again.
//!
//! Firing uses the extremes of the observation (`PriceUpdated.interval_high/low`, which
//! include every trade since the previous update), so a crossing inside a coalescing interval
//! is not missed; arming uses the last price only, because the order of the extremes inside
//! the interval is unknown.

use std::fmt;
use std::time::Duration;

use mirai_proto::notification::v1 as pb;
use pb::condition::Kind as PbKind;

/// Why a condition from the wire is refused (`INVALID_ARGUMENT` naming the field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConditionError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> ConditionError {
    ConditionError {
        field,
        problem: problem.into(),
    }
}

/// Size of a move within a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MoveSize {
    Amount(f64),
    Percent(f64),
}

/// What a condition watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Crossing the level; `up` / `down` say which directions count.
    Cross {
        level: f64,
        up: bool,
        down: bool,
    },
    Above(f64),
    Below(f64),
    EnterChannel {
        lower: f64,
        upper: f64,
    },
    ExitChannel {
        lower: f64,
        upper: f64,
    },
    MoveUp {
        size: MoveSize,
        window: Duration,
    },
    MoveDown {
        size: MoveSize,
        window: Duration,
    },
    /// The price leaves the champion forecast's interval on the allowed sides.
    ForecastExit {
        above: bool,
        below: bool,
    },
    /// P(up) of the champion forecast at or above the threshold.
    ProbabilityUp(f64),
    /// The point forecast crosses the price (`up`: rises above it).
    ForecastCross {
        up: bool,
        down: bool,
    },
}

/// A valid condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub kind: Kind,
    /// Hysteresis in percent of the level (0.1 = 0.1 %).
    pub hysteresis_percent: f64,
}

/// The persisted arm flags of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arm {
    pub up: bool,
    pub down: bool,
}

/// The champion forecast an alert is evaluated against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastView {
    pub point: f64,
    pub lower: f64,
    pub upper: f64,
    pub p_up: f64,
}

/// One observation of the market: the last price and the extremes since the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub price: f64,
    pub high: f64,
    pub low: f64,
}

impl Observation {
    /// A single price (a bar close, or the standing price when a forecast arrives).
    pub fn at(price: f64) -> Self {
        Self {
            price,
            high: price,
            low: price,
        }
    }

    /// The extreme that met a condition: the high when the upper side did, the low when the
    /// lower side did; when both did within one interval (the order is unknown), the side the
    /// last price ended on relative to `middle`.
    fn extreme(&self, upper: bool, lower: bool, middle: f64) -> f64 {
        match (upper, lower) {
            (true, false) => self.high,
            (false, true) => self.low,
            _ if self.price >= middle => self.high,
            _ => self.low,
        }
    }
}

/// What an evaluation may look at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inputs {
    pub observation: Option<Observation>,
    pub forecast: Option<ForecastView>,
    /// Lowest and highest price since the move reference (moving conditions only).
    pub window: Option<(f64, f64)>,
}

/// The result of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub arm: Arm,
    pub fired: bool,
    /// When it fired on a price: the price that met the condition, which is the interval's
    /// extreme for the conditions that look at extremes (a high of 803.04 crossing 800 while
    /// the last price is 794.35), otherwise the last price.
    pub price: Option<f64>,
}

fn positive(field: &'static str, value: f64) -> Result<f64, ConditionError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(bad(
            field,
            format!("must be a positive number, got {value}"),
        ))
    }
}

const MIN_WINDOW: Duration = Duration::from_secs(60);
const MAX_WINDOW: Duration = Duration::from_secs(365 * 24 * 3600);

fn parse_move(
    m: &pb::PriceMove,
    field: &'static str,
) -> Result<(MoveSize, Duration), ConditionError> {
    let size = match m.size {
        Some(pb::price_move::Size::Amount(a)) => MoveSize::Amount(positive(field, a)?),
        Some(pb::price_move::Size::Percent(p)) => MoveSize::Percent(positive(field, p)?),
        None => return Err(bad(field, "amount or percent is required")),
    };
    let window = m
        .window
        .and_then(|w| u64::try_from(w.seconds).ok().map(Duration::from_secs))
        .ok_or_else(|| bad(field, "window is required"))?;
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
        return Err(bad(field, "window must be between 1 minute and 365 days"));
    }
    Ok((size, window))
}

fn parse_channel(c: &pb::PriceChannel, field: &'static str) -> Result<(f64, f64), ConditionError> {
    let lower = positive(field, c.lower)?;
    let upper = positive(field, c.upper)?;
    if upper <= lower {
        return Err(bad(field, "upper must be above lower"));
    }
    Ok((lower, upper))
}

impl Condition {
    /// Parses and checks a condition from the wire.
    pub fn parse(condition: &pb::Condition) -> Result<Self, ConditionError> {
        let level = |l: &pb::PriceLevel| positive("condition", l.price);
        let kind = match condition
            .kind
            .as_ref()
            .ok_or_else(|| bad("condition", "a condition kind is required"))?
        {
            PbKind::Crossing(l) => Kind::Cross {
                level: level(l)?,
                up: true,
                down: true,
            },
            PbKind::CrossingUp(l) => Kind::Cross {
                level: level(l)?,
                up: true,
                down: false,
            },
            PbKind::CrossingDown(l) => Kind::Cross {
                level: level(l)?,
                up: false,
                down: true,
            },
            PbKind::Above(l) => Kind::Above(level(l)?),
            PbKind::Below(l) => Kind::Below(level(l)?),
            PbKind::EnteringChannel(c) => {
                let (lower, upper) = parse_channel(c, "condition.entering_channel")?;
                Kind::EnterChannel { lower, upper }
            }
            PbKind::ExitingChannel(c) => {
                let (lower, upper) = parse_channel(c, "condition.exiting_channel")?;
                Kind::ExitChannel { lower, upper }
            }
            PbKind::MovingUp(m) => {
                let (size, window) = parse_move(m, "condition.moving_up")?;
                Kind::MoveUp { size, window }
            }
            PbKind::MovingDown(m) => {
                let (size, window) = parse_move(m, "condition.moving_down")?;
                Kind::MoveDown { size, window }
            }
            PbKind::ForecastIntervalExit(f) => match pb::IntervalSide::try_from(f.side) {
                Ok(pb::IntervalSide::Above) => Kind::ForecastExit {
                    above: true,
                    below: false,
                },
                Ok(pb::IntervalSide::Below) => Kind::ForecastExit {
                    above: false,
                    below: true,
                },
                Ok(pb::IntervalSide::Unspecified) => Kind::ForecastExit {
                    above: true,
                    below: true,
                },
                Err(_) => return Err(bad("condition.forecast_interval_exit.side", "unknown side")),
            },
            PbKind::ProbabilityUpAtLeast(p) => {
                if !(p.threshold > 0.0 && p.threshold < 1.0) {
                    return Err(bad(
                        "condition.probability_up_at_least.threshold",
                        "must be between 0 and 1 (exclusive)",
                    ));
                }
                Kind::ProbabilityUp(p.threshold)
            }
            PbKind::ForecastCrossesPrice(f) => match pb::CrossDirection::try_from(f.direction) {
                Ok(pb::CrossDirection::Up) => Kind::ForecastCross {
                    up: true,
                    down: false,
                },
                Ok(pb::CrossDirection::Down) => Kind::ForecastCross {
                    up: false,
                    down: true,
                },
                Ok(pb::CrossDirection::Unspecified) => Kind::ForecastCross {
                    up: true,
                    down: true,
                },
                Err(_) => {
                    return Err(bad(
                        "condition.forecast_crosses_price.direction",
                        "unknown direction",
                    ));
                }
            },
        };
        let h = condition.hysteresis_percent;
        if !(h.is_finite() && (0.0..=50.0).contains(&h)) {
            return Err(bad(
                "condition.hysteresis_percent",
                "must be between 0 and 50",
            ));
        }
        Ok(Self {
            kind,
            hysteresis_percent: h,
        })
    }

    /// The wire form (what [`Condition::parse`] accepts).
    pub fn to_proto(&self) -> pb::Condition {
        let level = |price| pb::PriceLevel { price };
        let channel = |lower, upper| pb::PriceChannel { lower, upper };
        let price_move = |size: MoveSize, window: Duration| pb::PriceMove {
            size: Some(match size {
                MoveSize::Amount(a) => pb::price_move::Size::Amount(a),
                MoveSize::Percent(p) => pb::price_move::Size::Percent(p),
            }),
            window: Some(prost_types::Duration {
                seconds: window.as_secs() as i64,
                nanos: 0,
            }),
        };
        let kind = match self.kind {
            Kind::Cross {
                level: l,
                up: true,
                down: true,
            } => PbKind::Crossing(level(l)),
            Kind::Cross {
                level: l, up: true, ..
            } => PbKind::CrossingUp(level(l)),
            Kind::Cross { level: l, .. } => PbKind::CrossingDown(level(l)),
            Kind::Above(l) => PbKind::Above(level(l)),
            Kind::Below(l) => PbKind::Below(level(l)),
            Kind::EnterChannel { lower, upper } => PbKind::EnteringChannel(channel(lower, upper)),
            Kind::ExitChannel { lower, upper } => PbKind::ExitingChannel(channel(lower, upper)),
            Kind::MoveUp { size, window } => PbKind::MovingUp(price_move(size, window)),
            Kind::MoveDown { size, window } => PbKind::MovingDown(price_move(size, window)),
            Kind::ForecastExit { above, below } => {
                let side = match (above, below) {
                    (true, false) => pb::IntervalSide::Above,
                    (false, true) => pb::IntervalSide::Below,
                    _ => pb::IntervalSide::Unspecified,
                };
                PbKind::ForecastIntervalExit(pb::ForecastIntervalExit { side: side.into() })
            }
            Kind::ProbabilityUp(threshold) => {
                PbKind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold { threshold })
            }
            Kind::ForecastCross { up, down } => {
                let direction = match (up, down) {
                    (true, false) => pb::CrossDirection::Up,
                    (false, true) => pb::CrossDirection::Down,
                    _ => pb::CrossDirection::Unspecified,
                };
                PbKind::ForecastCrossesPrice(pb::ForecastCrossesPrice {
                    direction: direction.into(),
                })
            }
        };
        pb::Condition {
            kind: Some(kind),
            hysteresis_percent: self.hysteresis_percent,
        }
    }

    /// True for conditions on the forecast (category FORECAST_ALERT; evaluated on
    /// `prediction.generated` too).
    pub fn is_forecast(&self) -> bool {
        matches!(
            self.kind,
            Kind::ForecastExit { .. } | Kind::ProbabilityUp(_) | Kind::ForecastCross { .. }
        )
    }

    /// Whether a new observation of the price alone can change this condition.
    pub fn watches_price(&self) -> bool {
        !matches!(self.kind, Kind::ProbabilityUp(_))
    }

    /// The window of a moving condition.
    pub fn window(&self) -> Option<Duration> {
        match self.kind {
            Kind::MoveUp { window, .. } | Kind::MoveDown { window, .. } => Some(window),
            _ => None,
        }
    }

    /// The state of a newly activated (or re-armed) alert. Level conditions ("above",
    /// "P(up) ≥", "outside the interval") start armed, so an alert created while the condition
    /// already holds fires on the first observation; crossings and channel moves start
    /// disarmed and arm on the first observation on the far side, because a crossing needs a
    /// "before".
    pub fn initial_arm(&self) -> Arm {
        match self.kind {
            Kind::Above(_)
            | Kind::Below(_)
            | Kind::ProbabilityUp(_)
            | Kind::ForecastExit { .. }
            | Kind::MoveUp { .. }
            | Kind::MoveDown { .. } => Arm {
                up: true,
                down: true,
            },
            _ => Arm::default(),
        }
    }

    /// Evaluates the condition on `inputs` from state `arm`. Inputs a condition needs but
    /// does not have (no forecast yet, no price yet) leave it unchanged.
    pub fn evaluate(&self, arm: Arm, inputs: &Inputs) -> Outcome {
        let h = self.hysteresis_percent / 100.0;
        let unchanged = Outcome {
            arm,
            fired: false,
            price: None,
        };
        match self.kind {
            Kind::Cross { level, up, down } => {
                let Some(o) = inputs.observation else {
                    return unchanged;
                };
                cross(arm, level, o, h, up, down)
            }
            Kind::Above(level) => {
                let Some(o) = inputs.observation else {
                    return unchanged;
                };
                let fired = arm.up && o.price > level;
                let rearm = o.price <= level * (1.0 - h);
                let up = (arm.up && !fired) || rearm;
                Outcome {
                    arm: Arm { up, down: up },
                    fired,
                    price: fired.then_some(o.price),
                }
            }
            Kind::Below(level) => {
                let Some(o) = inputs.observation else {
                    return unchanged;
                };
                let fired = arm.down && o.price < level;
                let rearm = o.price >= level * (1.0 + h);
                let down = (arm.down && !fired) || rearm;
                Outcome {
                    arm: Arm { up: down, down },
                    fired,
                    price: fired.then_some(o.price),
                }
            }
            Kind::EnterChannel { lower, upper } => {
                let Some(o) = inputs.observation else {
                    return unchanged;
                };
                let fired = arm.up && o.price >= lower && o.price <= upper;
                let outside = o.price < lower * (1.0 - h) || o.price > upper * (1.0 + h);
                let armed = (arm.up && !fired) || outside;
                Outcome {
                    arm: Arm {
                        up: armed,
                        down: armed,
                    },
                    fired,
                    price: fired.then_some(o.price),
                }
            }
            Kind::ExitChannel { lower, upper } => {
                let Some(o) = inputs.observation else {
                    return unchanged;
                };
                let fired = arm.up && (o.low < lower || o.high > upper);
                let inside = o.price >= lower * (1.0 + h) && o.price <= upper * (1.0 - h);
                let armed = (arm.up && !fired) || inside;
                Outcome {
                    arm: Arm {
                        up: armed,
                        down: armed,
                    },
                    fired,
                    price: fired
                        .then(|| o.extreme(o.high > upper, o.low < lower, (lower + upper) / 2.0)),
                }
            }
            Kind::MoveUp { size, .. } => {
                let (Some(o), Some((low, _))) = (inputs.observation, inputs.window) else {
                    return unchanged;
                };
                let low = low.min(o.low);
                let fired = reached(size, o.high - low, low);
                Outcome {
                    arm,
                    fired,
                    price: fired.then_some(o.high),
                }
            }
            Kind::MoveDown { size, .. } => {
                let (Some(o), Some((_, high))) = (inputs.observation, inputs.window) else {
                    return unchanged;
                };
                let high = high.max(o.high);
                let fired = reached(size, high - o.low, high);
                Outcome {
                    arm,
                    fired,
                    price: fired.then_some(o.low),
                }
            }
            Kind::ForecastExit { above, below } => {
                let (Some(o), Some(f)) = (inputs.observation, inputs.forecast) else {
                    return unchanged;
                };
                let (out_above, out_below) = (above && o.high > f.upper, below && o.low < f.lower);
                let fired = arm.up && (out_above || out_below);
                let inside = o.price >= f.lower * (1.0 + h) && o.price <= f.upper * (1.0 - h);
                let armed = (arm.up && !fired) || inside;
                Outcome {
                    arm: Arm {
                        up: armed,
                        down: armed,
                    },
                    fired,
                    price: fired.then(|| o.extreme(out_above, out_below, f.point)),
                }
            }
            Kind::ProbabilityUp(threshold) => {
                let Some(f) = inputs.forecast else {
                    return unchanged;
                };
                let fired = arm.up && f.p_up >= threshold;
                let rearm = f.p_up < threshold - h;
                let armed = (arm.up && !fired) || rearm;
                Outcome {
                    arm: Arm {
                        up: armed,
                        down: armed,
                    },
                    fired,
                    price: None,
                }
            }
            Kind::ForecastCross { up, down } => {
                let (Some(o), Some(f)) = (inputs.observation, inputs.forecast) else {
                    return unchanged;
                };
                // The forecast crossing the price is the price crossing the forecast the other
                // way: "forecast rises above the price" = the price falls below the forecast.
                let flipped = cross(
                    Arm {
                        up: arm.down,
                        down: arm.up,
                    },
                    f.point,
                    Observation::at(o.price),
                    h,
                    down,
                    up,
                );
                Outcome {
                    arm: Arm {
                        up: flipped.arm.down,
                        down: flipped.arm.up,
                    },
                    fired: flipped.fired,
                    price: flipped.price,
                }
            }
        }
    }
}

fn reached(size: MoveSize, distance: f64, reference: f64) -> bool {
    match size {
        MoveSize::Amount(a) => distance >= a,
        MoveSize::Percent(p) => reference > 0.0 && distance / reference * 100.0 >= p,
    }
}

/// The crossing machine: fire on the extremes, arm on the last price beyond the band.
fn cross(arm: Arm, level: f64, o: Observation, h: f64, up: bool, down: bool) -> Outcome {
    let fired_up = up && arm.up && o.high >= level;
    let fired_down = down && arm.down && o.low <= level;
    let below = if h > 0.0 {
        o.price <= level * (1.0 - h)
    } else {
        o.price < level
    };
    let above = if h > 0.0 {
        o.price >= level * (1.0 + h)
    } else {
        o.price > level
    };
    Outcome {
        arm: Arm {
            up: up && ((arm.up && !fired_up) || below),
            down: down && ((arm.down && !fired_down) || above),
        },
        fired: fired_up || fired_down,
        price: (fired_up || fired_down).then(|| o.extreme(fired_up, fired_down, level)),
    }
}

/// A price as messages show it: two decimals.
pub fn money(x: f64) -> String {
    format!("{x:.2}")
}

impl fmt::Display for Condition {
    /// The human-readable condition, e.g. "crossing up 150.00".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |s: MoveSize| match s {
            MoveSize::Amount(a) => money(a),
            MoveSize::Percent(p) => format!("{p}%"),
        };
        let window = |w: Duration| humantime::format_duration(w).to_string();
        match self.kind {
            Kind::Cross {
                level,
                up: true,
                down: true,
            } => write!(f, "crossing {}", money(level)),
            Kind::Cross {
                level, up: true, ..
            } => write!(f, "crossing up {}", money(level)),
            Kind::Cross { level, .. } => write!(f, "crossing down {}", money(level)),
            Kind::Above(l) => write!(f, "above {}", money(l)),
            Kind::Below(l) => write!(f, "below {}", money(l)),
            Kind::EnterChannel { lower, upper } => {
                write!(f, "entering {}–{}", money(lower), money(upper))
            }
            Kind::ExitChannel { lower, upper } => {
                write!(f, "exiting {}–{}", money(lower), money(upper))
            }
            Kind::MoveUp { size: s, window: w } => {
                write!(f, "moving up {} within {}", size(s), window(w))
            }
            Kind::MoveDown { size: s, window: w } => {
                write!(f, "moving down {} within {}", size(s), window(w))
            }
            Kind::ForecastExit { above, below } => f.write_str(match (above, below) {
                (true, false) => "price above the forecast interval",
                (false, true) => "price below the forecast interval",
                _ => "price outside the forecast interval",
            }),
            Kind::ProbabilityUp(t) => write!(f, "P(up) at least {:.0}%", t * 100.0),
            Kind::ForecastCross { up, down } => f.write_str(match (up, down) {
                (true, false) => "forecast crossing above the price",
                (false, true) => "forecast crossing below the price",
                _ => "forecast crossing the price",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(kind: PbKind, hysteresis_percent: f64) -> Condition {
        Condition::parse(&pb::Condition {
            kind: Some(kind),
            hysteresis_percent,
        })
        .unwrap()
    }

    fn level(price: f64) -> pb::PriceLevel {
        pb::PriceLevel { price }
    }

    /// Feeds last prices one by one; returns the indexes that fired.
    fn run(c: &Condition, prices: &[f64]) -> Vec<usize> {
        run_with(c, prices, None)
    }

    fn run_with(c: &Condition, prices: &[f64], forecast: Option<ForecastView>) -> Vec<usize> {
        let mut arm = c.initial_arm();
        let mut fired = Vec::new();
        for (i, p) in prices.iter().enumerate() {
            let out = c.evaluate(
                arm,
                &Inputs {
                    observation: Some(Observation::at(*p)),
                    forecast,
                    window: None,
                },
            );
            arm = out.arm;
            if out.fired {
                fired.push(i);
            }
        }
        fired
    }

    #[test]
    fn crossing_up_fires_once_per_crossing_and_needs_a_before() {
        let c = cond(PbKind::CrossingUp(level(150.0)), 0.0);
        // Starts above: no crossing until it has been below.
        assert_eq!(
            run(&c, &[151.0, 152.0, 149.0, 150.5, 151.0, 149.9, 150.0]),
            [3, 6]
        );
    }

    #[test]
    fn crossing_down_and_either_direction() {
        let down = cond(PbKind::CrossingDown(level(100.0)), 0.0);
        assert_eq!(run(&down, &[101.0, 99.0, 98.0, 101.0, 100.0]), [1, 4]);
        let either = cond(PbKind::Crossing(level(100.0)), 0.0);
        assert_eq!(run(&either, &[99.0, 101.0, 99.0, 98.0, 102.0]), [1, 2, 4]);
    }

    #[test]
    fn hysteresis_swallows_jitter_around_the_level() {
        let c = cond(PbKind::Crossing(level(150.0)), 0.1); // band 149.85..150.15
        let jitter = [
            149.0, 150.1, 149.9, 150.1, 149.9, 150.1, 150.2, 149.9, 150.1,
        ];
        // Fires up at 150.1 (index 1); re-arms down only at 150.2 (index 6), fires down at 149.9.
        assert_eq!(run(&c, &jitter), [1, 7]);
        let plain = cond(PbKind::Crossing(level(150.0)), 0.0);
        assert_eq!(run(&plain, &jitter), [1, 2, 3, 4, 5, 7, 8]);
    }

    #[test]
    fn a_crossing_inside_the_coalescing_interval_is_seen() {
        let c = cond(PbKind::CrossingUp(level(150.0)), 0.0);
        let armed = c.evaluate(
            c.initial_arm(),
            &Inputs {
                observation: Some(Observation::at(149.0)),
                ..Inputs::default()
            },
        );
        let spike = Observation {
            price: 149.5,
            high: 150.3,
            low: 149.0,
        };
        let out = c.evaluate(
            armed.arm,
            &Inputs {
                observation: Some(spike),
                ..Inputs::default()
            },
        );
        assert!(out.fired);
        assert_eq!(
            out.price,
            Some(150.3),
            "the high crossed, not the last price"
        );
        assert!(
            out.arm.up,
            "ended below the level again, so the next crossing counts"
        );
    }

    #[test]
    fn the_price_that_met_the_condition_is_the_extreme_that_did() {
        let observe = |c: &Condition, arm: Arm, price: f64, high: f64, low: f64| {
            c.evaluate(
                arm,
                &Inputs {
                    observation: Some(Observation { price, high, low }),
                    ..Inputs::default()
                },
            )
        };
        let armed = Arm {
            up: true,
            down: true,
        };
        let up = cond(PbKind::CrossingUp(level(800.0)), 0.0);
        assert_eq!(
            observe(&up, armed, 794.35, 803.04, 790.0).price,
            Some(803.04)
        );
        let down = cond(PbKind::CrossingDown(level(800.0)), 0.0);
        assert_eq!(
            observe(&down, armed, 801.0, 805.0, 799.5).price,
            Some(799.5)
        );
        // Both ways inside one interval: the side the last price ended on.
        let either = cond(PbKind::Crossing(level(800.0)), 0.0);
        assert_eq!(
            observe(&either, armed, 801.0, 803.0, 797.0).price,
            Some(803.0)
        );
        assert_eq!(
            observe(&either, armed, 799.0, 803.0, 797.0).price,
            Some(797.0)
        );
        // Conditions on the last price name the last price; nothing fired, no price.
        let above = cond(PbKind::Above(level(800.0)), 0.0);
        assert_eq!(
            observe(&above, armed, 801.0, 810.0, 795.0).price,
            Some(801.0)
        );
        assert_eq!(observe(&above, armed, 799.0, 810.0, 795.0).price, None);
    }

    #[test]
    fn above_and_below_fire_on_entry_and_rearm_on_the_way_back() {
        let above = cond(PbKind::Above(level(50.0)), 0.0);
        assert_eq!(run(&above, &[51.0, 52.0, 50.0, 50.5]), [0, 3]);
        let below = cond(PbKind::Below(level(50.0)), 2.0); // re-arms at ≥ 51
        assert_eq!(run(&below, &[49.0, 50.5, 49.0, 51.0, 49.5]), [0, 4]);
    }

    #[test]
    fn channels_fire_on_entering_and_exiting() {
        let channel = pb::PriceChannel {
            lower: 10.0,
            upper: 20.0,
        };
        let enter = cond(PbKind::EnteringChannel(channel), 0.0);
        assert_eq!(run(&enter, &[15.0, 25.0, 19.0, 18.0, 9.0, 10.0]), [2, 5]);
        let exit = cond(PbKind::ExitingChannel(channel), 0.0);
        assert_eq!(run(&exit, &[25.0, 15.0, 21.0, 22.0, 12.0, 9.0]), [2, 5]);
    }

    #[test]
    fn moves_compare_with_the_window_extremes() {
        let up = cond(
            PbKind::MovingUp(pb::PriceMove {
                size: Some(pb::price_move::Size::Percent(5.0)),
                window: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
            }),
            0.0,
        );
        let eval = |price: f64, window: (f64, f64)| {
            up.evaluate(
                up.initial_arm(),
                &Inputs {
                    observation: Some(Observation::at(price)),
                    window: Some(window),
                    ..Inputs::default()
                },
            )
            .fired
        };
        assert!(!eval(104.9, (100.0, 104.0)));
        assert!(eval(105.0, (100.0, 104.0)));
        let down = cond(
            PbKind::MovingDown(pb::PriceMove {
                size: Some(pb::price_move::Size::Amount(3.0)),
                window: Some(prost_types::Duration {
                    seconds: 86400,
                    nanos: 0,
                }),
            }),
            0.0,
        );
        let fired = down
            .evaluate(
                down.initial_arm(),
                &Inputs {
                    observation: Some(Observation::at(97.0)),
                    window: Some((96.0, 100.0)),
                    ..Inputs::default()
                },
            )
            .fired;
        assert!(fired);
        // Without the history it cannot be decided, so nothing happens.
        let out = down.evaluate(
            down.initial_arm(),
            &Inputs {
                observation: Some(Observation::at(1.0)),
                ..Inputs::default()
            },
        );
        assert!(!out.fired);
    }

    fn forecast(point: f64, lower: f64, upper: f64, p_up: f64) -> ForecastView {
        ForecastView {
            point,
            lower,
            upper,
            p_up,
        }
    }

    #[test]
    fn leaving_the_forecast_interval() {
        let either = cond(
            PbKind::ForecastIntervalExit(pb::ForecastIntervalExit { side: 0 }),
            0.0,
        );
        let f = Some(forecast(100.0, 95.0, 105.0, 0.5));
        assert_eq!(
            run_with(&either, &[100.0, 106.0, 107.0, 100.0, 94.0], f),
            [1, 4]
        );
        let above = cond(
            PbKind::ForecastIntervalExit(pb::ForecastIntervalExit {
                side: pb::IntervalSide::Above.into(),
            }),
            0.0,
        );
        assert_eq!(run_with(&above, &[94.0, 100.0, 106.0], f), [2]);
        // No forecast yet: nothing to compare with.
        assert!(run_with(&either, &[1.0, 1000.0], None).is_empty());
    }

    #[test]
    fn probability_up_threshold() {
        let c = cond(
            PbKind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold { threshold: 0.7 }),
            0.0,
        );
        let mut arm = c.initial_arm();
        let mut fired = Vec::new();
        for (i, p) in [0.6, 0.72, 0.8, 0.65, 0.7].iter().enumerate() {
            let out = c.evaluate(
                arm,
                &Inputs {
                    forecast: Some(forecast(1.0, 0.9, 1.1, *p)),
                    ..Inputs::default()
                },
            );
            arm = out.arm;
            if out.fired {
                fired.push(i);
            }
        }
        assert_eq!(fired, [1, 4]);
    }

    #[test]
    fn the_forecast_crossing_the_price() {
        let up = cond(
            PbKind::ForecastCrossesPrice(pb::ForecastCrossesPrice {
                direction: pb::CrossDirection::Up.into(),
            }),
            0.0,
        );
        // Forecast 100 standing; the price falls from above it to below it: the forecast is
        // now above the price (the model expects a rise).
        let f = Some(forecast(100.0, 90.0, 110.0, 0.5));
        assert_eq!(
            run_with(&up, &[101.0, 102.0, 99.0, 98.0, 101.0, 99.5], f),
            [2, 5]
        );
        let down = cond(
            PbKind::ForecastCrossesPrice(pb::ForecastCrossesPrice {
                direction: pb::CrossDirection::Down.into(),
            }),
            0.0,
        );
        assert_eq!(run_with(&down, &[99.0, 101.0, 98.0], f), [1]);
    }

    #[test]
    fn bad_conditions_are_refused_with_the_field() {
        let err = Condition::parse(&pb::Condition::default()).unwrap_err();
        assert_eq!(err.field, "condition");
        let err = Condition::parse(&pb::Condition {
            kind: Some(PbKind::Above(level(-1.0))),
            hysteresis_percent: 0.0,
        })
        .unwrap_err();
        assert!(err.problem.contains("positive"));
        let err = Condition::parse(&pb::Condition {
            kind: Some(PbKind::EnteringChannel(pb::PriceChannel {
                lower: 5.0,
                upper: 5.0,
            })),
            hysteresis_percent: 0.0,
        })
        .unwrap_err();
        assert_eq!(err.field, "condition.entering_channel");
        let err = Condition::parse(&pb::Condition {
            kind: Some(PbKind::MovingUp(pb::PriceMove {
                size: Some(pb::price_move::Size::Percent(1.0)),
                window: Some(prost_types::Duration {
                    seconds: 30,
                    nanos: 0,
                }),
            })),
            hysteresis_percent: 0.0,
        })
        .unwrap_err();
        assert!(err.problem.contains("1 minute"));
        let err = Condition::parse(&pb::Condition {
            kind: Some(PbKind::Above(level(1.0))),
            hysteresis_percent: f64::NAN,
        })
        .unwrap_err();
        assert_eq!(err.field, "condition.hysteresis_percent");
    }

    #[test]
    fn conditions_round_trip_and_read_well() {
        for kind in [
            PbKind::Crossing(level(1.5)),
            PbKind::CrossingUp(level(150.0)),
            PbKind::CrossingDown(level(2.0)),
            PbKind::Below(level(3.0)),
            PbKind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold { threshold: 0.6 }),
            PbKind::ForecastCrossesPrice(pb::ForecastCrossesPrice { direction: 2 }),
        ] {
            let c = cond(kind, 0.25);
            assert_eq!(Condition::parse(&c.to_proto()).unwrap(), c);
        }
        assert_eq!(
            cond(PbKind::CrossingUp(level(150.0)), 0.0).to_string(),
            "crossing up 150.00"
        );
    }
}
