//! Indicators over 5,000 daily bars and statistics over 20 years of daily returns (the last
//! 5,000 bars of the committed S&P 500 history), release profile:
//!
//! ```text
//! cargo bench -p mirai-analytics --bench numerics
//! ```
//!
//! Each indicator is timed through `Indicator::compute`, the path the service takes (input
//! validation and output alignment included); `all` runs every indicator (or statistic) once.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mirai_analytics::indicators::{Bars, Indicator, Params};
use mirai_analytics::stats;

const BARS: usize = 5_000;

struct Data {
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
}

fn load() -> Data {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../stock-data/sample/sp500-2000.csv"
    );
    let text = std::fs::read_to_string(path).expect("the committed S&P 500 history");
    let mut d = Data {
        high: Vec::new(),
        low: Vec::new(),
        close: Vec::new(),
        volume: Vec::new(),
    };
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line
            .split(',')
            .skip(1)
            .map(|v| v.parse().expect("a number"))
            .collect();
        d.high.push(f[1]);
        d.low.push(f[2]);
        d.close.push(f[3]);
        d.volume.push(f[5]);
    }
    let skip = d.close.len() - BARS;
    for col in [&mut d.high, &mut d.low, &mut d.close, &mut d.volume] {
        col.drain(..skip);
    }
    d
}

fn specs() -> Vec<Indicator> {
    let p = |name: &str, params: &[(&str, u32)]| {
        let params: Params = params.iter().map(|&(k, v)| (k, v)).collect();
        Indicator::parse(name, &params).expect("a valid spec")
    };
    vec![
        p("sma", &[("period", 20)]),
        p("ema", &[("period", 20)]),
        p("wma", &[("period", 20)]),
        p("dema", &[("period", 20)]),
        p("tema", &[("period", 20)]),
        p("bbands", &[("period", 20)]),
        p("rsi", &[("period", 14)]),
        p("macd", &[]),
        p("stoch", &[]),
        p("adx", &[("period", 14)]),
        p("cci", &[("period", 20)]),
        p("mfi", &[("period", 14)]),
        p("obv", &[]),
        p("atr", &[("period", 14)]),
        p("natr", &[("period", 14)]),
        p("returns", &[]),
        p("log_returns", &[]),
    ]
}

fn indicators(c: &mut Criterion) {
    let d = load();
    let bars = Bars::new(&d.high, &d.low, &d.close, &d.volume).expect("valid bars");
    let specs = specs();
    let mut group = c.benchmark_group("indicators_5000_bars");
    group.throughput(Throughput::Elements(BARS as u64));
    for spec in &specs {
        group.bench_function(spec.to_string(), |b| {
            b.iter(|| spec.compute(black_box(&bars)).expect("computes"))
        });
    }
    group.bench_function("all", |b| {
        b.iter(|| {
            for spec in &specs {
                black_box(spec.compute(black_box(&bars)).expect("computes"));
            }
        })
    });
    group.finish();
}

fn statistics(c: &mut Criterion) {
    let d = load();
    let r: Vec<f64> = d.close.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    // A benchmark series of the same length: the index lagged by one day.
    let b: Vec<f64> = std::iter::once(0.0)
        .chain(r[..r.len() - 1].iter().copied())
        .collect();
    let rf = 0.0001;
    type Stat<'a> = (&'a str, Box<dyn Fn() -> f64 + 'a>);
    let all: Vec<Stat<'_>> = vec![
        (
            "annual_return",
            Box::new(|| stats::annual_return(&r).unwrap()),
        ),
        (
            "annual_volatility",
            Box::new(|| stats::annual_volatility(&r).unwrap()),
        ),
        (
            "sharpe_ratio",
            Box::new(|| stats::sharpe_ratio(&r, rf).unwrap()),
        ),
        (
            "sortino_ratio",
            Box::new(|| stats::sortino_ratio(&r, rf).unwrap()),
        ),
        (
            "max_drawdown",
            Box::new(|| stats::max_drawdown(&r).unwrap().depth),
        ),
        (
            "calmar_ratio",
            Box::new(|| stats::calmar_ratio(&r).unwrap()),
        ),
        (
            "alpha_beta",
            Box::new(|| stats::alpha_beta(&r, &b, rf).unwrap().alpha),
        ),
        (
            "correlation",
            Box::new(|| stats::correlation(&r, &b).unwrap()),
        ),
        (
            "value_at_risk_5pct",
            Box::new(|| stats::value_at_risk(&r, 0.05).unwrap()),
        ),
        (
            "conditional_value_at_risk_5pct",
            Box::new(|| stats::conditional_value_at_risk(&r, 0.05).unwrap()),
        ),
        (
            "rolling_sharpe_63",
            Box::new(|| stats::rolling_sharpe(&r, 63, 0.0).unwrap()[r.len() - 1]),
        ),
        (
            "rolling_sharpe_252",
            Box::new(|| stats::rolling_sharpe(&r, 252, 0.0).unwrap()[r.len() - 1]),
        ),
        (
            "rolling_volatility_63",
            Box::new(|| stats::rolling_volatility(&r, 63).unwrap()[r.len() - 1]),
        ),
        (
            "rolling_beta_63",
            Box::new(|| stats::rolling_beta(&r, &b, 63).unwrap()[r.len() - 1]),
        ),
    ];
    let mut group = c.benchmark_group("stats_5000_returns");
    group.throughput(Throughput::Elements(r.len() as u64));
    for (name, f) in &all {
        group.bench_function(*name, |bench| bench.iter(|| black_box(f())));
    }
    group.bench_function("all", |bench| {
        bench.iter(|| {
            for (_, f) in &all {
                black_box(f());
            }
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // The machine is two shared cores: short, repeated samples rather than long ones.
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = indicators, statistics
}
criterion_main!(benches);
