//! Report generation per format: a symbol report (price with SMA 50/200 and Bollinger bands,
//! drawdown, rolling Sharpe, statistics, the table) over five years of the committed S&P 500
//! daily history (2015–2019, 1,258 bars), release profile:
//!
//! ```text
//! cargo bench -p mirai-analytics --bench reports
//! ```
//!
//! `content` is building the report from the bars (indicators, statistics, table, chart
//! series); each format is rendering that content as the worker does (`render`). A job's time
//! is `content` plus the sum of its formats, plus reading the bars and storing the files.

use std::hint::black_box;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use mirai_analytics::domain::{BarSeries, Symbol};
use mirai_analytics::reports::build::{skeleton, symbol_report};
use mirai_analytics::reports::content::Report;
use mirai_analytics::reports::render::render;
use mirai_analytics::reports::spec::{Format, Spec};
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;

fn spec() -> Spec {
    let at = |y, m, d| Utc.from_utc_datetime(&NaiveDate::from_ymd_opt(y, m, d).unwrap().into());
    Spec::from_wire(
        &pb::CreateReportRequest {
            subject: Some(pb::ReportSubject {
                subject: Some(pb::report_subject::Subject::Symbol("SPX".into())),
            }),
            start: Some(wire::timestamp(at(2015, 1, 1))),
            end: Some(wire::timestamp(at(2020, 1, 1))),
            ..Default::default()
        },
        Utc::now(),
    )
    .expect("a valid spec")
}

/// The bars of the spec's range from the committed history.
fn bars(spec: &Spec) -> BarSeries {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../stock-data/sample/sp500-2000.csv"
    );
    let text = std::fs::read_to_string(path).expect("the committed S&P 500 history");
    let mut series = BarSeries::default();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let date = NaiveDate::parse_from_str(f[0], "%Y-%m-%d").expect("a date");
        let start = Utc.from_utc_datetime(&date.and_hms_opt(14, 30, 0).unwrap());
        if start < spec.start || start >= spec.end {
            continue;
        }
        let n = |i: usize| f[i].parse::<f64>().expect("a number");
        series.push(start, [n(1), n(2), n(3), n(4), n(6)]);
    }
    series
}

fn content(spec: &Spec, symbol: &Symbol, series: &BarSeries) -> Report {
    let mut report = skeleton(spec);
    symbol_report(&mut report, symbol, series, None).expect("content");
    report
}

fn reports(c: &mut Criterion) {
    let spec = spec();
    let series = bars(&spec);
    let symbol = Symbol::parse("symbol", "SPX").unwrap();
    let report = content(&spec, &symbol, &series);
    let mut group = c.benchmark_group(format!("symbol report, {} bars", series.len()));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("content", |b| {
        b.iter(|| content(black_box(&spec), &symbol, black_box(&series)))
    });
    for format in [Format::Json, Format::Csv, Format::Svg, Format::Png] {
        let size = render(&report, format).expect("renders").len();
        group.bench_function(
            format!("{} ({} KiB)", format.extension(), size / 1024),
            |b| b.iter(|| render(black_box(&report), format).expect("renders")),
        );
    }
    group.finish();
}

criterion_group!(benches, reports);
criterion_main!(benches);
