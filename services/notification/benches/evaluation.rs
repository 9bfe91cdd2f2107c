//! Rule evaluation throughput: 10,000 active alerts over 500 symbols (20 per symbol, a mix of
//! every condition kind and frequency), one price update per symbol evaluated against all of
//! its alerts — the in-memory part of the evaluation handler (`Rule::decide`), single thread:
//!
//! ```text
//! cargo bench -p mirai-notification --bench evaluation
//! ```
//!
//! Throughput is reported in rule evaluations per second (one core).

use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mirai_notification::domain::alert::{Cause, Frequency, Rule, State};
use mirai_notification::domain::condition::{Condition, ForecastView, Inputs, Observation};
use mirai_proto::notification::v1 as pb;
use mirai_proto::stock::v1::Timeframe;
use pb::condition::Kind;

const SYMBOLS: usize = 500;
const PER_SYMBOL: usize = 20;

fn condition(i: usize) -> pb::Condition {
    let level = 90.0 + (i % 20) as f64;
    let kind = match i % 12 {
        0 => Kind::Crossing(pb::PriceLevel { price: level }),
        1 => Kind::CrossingUp(pb::PriceLevel { price: level }),
        2 => Kind::CrossingDown(pb::PriceLevel { price: level }),
        3 => Kind::Above(pb::PriceLevel { price: level }),
        4 => Kind::Below(pb::PriceLevel { price: level }),
        5 => Kind::EnteringChannel(pb::PriceChannel {
            lower: level - 2.0,
            upper: level + 2.0,
        }),
        6 => Kind::ExitingChannel(pb::PriceChannel {
            lower: level - 2.0,
            upper: level + 2.0,
        }),
        7 => Kind::MovingUp(pb::PriceMove {
            size: Some(pb::price_move::Size::Percent(3.0)),
            window: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        }),
        8 => Kind::MovingDown(pb::PriceMove {
            size: Some(pb::price_move::Size::Amount(2.0)),
            window: Some(prost_types::Duration {
                seconds: 86_400,
                nanos: 0,
            }),
        }),
        9 => Kind::ForecastIntervalExit(pb::ForecastIntervalExit { side: 0 }),
        10 => Kind::ProbabilityUpAtLeast(pb::ProbabilityUpThreshold { threshold: 0.7 }),
        _ => Kind::ForecastCrossesPrice(pb::ForecastCrossesPrice { direction: 1 }),
    };
    pb::Condition {
        kind: Some(kind),
        hysteresis_percent: 0.1,
    }
}

fn rules() -> Vec<Vec<(Rule, State)>> {
    let frequencies = [Frequency::Once, Frequency::OncePerBar, Frequency::EveryTime];
    (0..SYMBOLS)
        .map(|s| {
            (0..PER_SYMBOL)
                .map(|i| {
                    let condition = Condition::parse(&condition(s * PER_SYMBOL + i)).unwrap();
                    let state = State {
                        arm: condition.initial_arm(),
                        ..State::default()
                    };
                    let rule = Rule {
                        condition,
                        frequency: frequencies[i % 3],
                        timeframe: Timeframe::OneDay,
                        cooldown: Duration::from_secs(3600),
                    };
                    (rule, state)
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut book = rules();
    let at: DateTime<Utc> = "2026-03-10T15:00:00Z".parse().unwrap();
    let forecast = ForecastView {
        point: 101.0,
        lower: 95.0,
        upper: 105.0,
        p_up: 0.6,
    };
    let mut group = c.benchmark_group("evaluation");
    group.throughput(Throughput::Elements((SYMBOLS * PER_SYMBOL) as u64));
    let mut tick = 0u64;
    group.bench_function("10k_alerts_500_symbols_one_update_each", |b| {
        b.iter(|| {
            tick += 1;
            // Prices wander through the levels so crossings, arming and firing all happen.
            let price = 90.0 + (tick % 40) as f64 * 0.5;
            let inputs = Inputs {
                observation: Some(Observation {
                    price,
                    high: price + 0.2,
                    low: price - 0.2,
                }),
                forecast: Some(forecast),
                window: Some((price - 3.0, price + 3.0)),
            };
            let mut fired = 0u32;
            for symbol in book.iter_mut() {
                for (rule, state) in symbol.iter_mut() {
                    let d = rule.decide(*state, black_box(&inputs), Cause::Price, at);
                    *state = d.state;
                    fired += u32::from(d.fire);
                }
            }
            black_box(fired)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
