//! Indicators, statistics and trends through the RPCs, on the S&P 500 sample back-filled from
//! stock-data; and the errors a bad request gets.

use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use uuid::Uuid;

use crate::helpers::{TestApp, as_user, at, sample_rows, spawn, ts};

fn sma_spec(period: f64) -> pb::IndicatorSpec {
    pb::IndicatorSpec {
        indicator: pb::Indicator::Sma.into(),
        params: [("period".to_owned(), period)].into(),
        ..Default::default()
    }
}

async fn ready() -> TestApp {
    let mut app = spawn().await;
    app.backfill("SPX").await;
    app
}

async fn indicators(
    app: &mut TestApp,
    r: pb::GetIndicatorsRequest,
) -> Result<pb::GetIndicatorsResponse, tonic::Status> {
    app.client
        .get_indicators(as_user(Uuid::now_v7(), r))
        .await
        .map(|r| r.into_inner())
}

fn values(s: &pb::IndicatorSeries) -> Vec<Option<f64>> {
    s.values.iter().map(|v| v.value).collect()
}

#[tokio::test]
async fn indicators_follow_the_range_and_the_warm_up_conventions() {
    let mut app = ready().await;
    let rows = sample_rows();
    let closes: Vec<f64> = rows.iter().map(|r| r.1[3]).collect();
    // 2019: the range alone, then with warm-up from the bars before it.
    let start = ts("2019-01-01T00:00:00Z");
    let end = ts("2020-01-01T00:00:00Z");
    let first = rows
        .iter()
        .position(|r| r.0.as_str() >= "2019-01-01")
        .unwrap();
    let last = rows
        .iter()
        .position(|r| r.0.as_str() >= "2020-01-01")
        .unwrap();
    let mut request = pb::GetIndicatorsRequest {
        symbol: "spx".into(),
        start: Some(start),
        end: Some(end),
        indicators: vec![
            sma_spec(20.0),
            pb::IndicatorSpec {
                indicator: pb::Indicator::Bbands.into(),
                params: [("timeperiod".to_owned(), 20.0)].into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let alone = indicators(&mut app, request.clone()).await.unwrap();
    assert_eq!(alone.timestamps.len(), last - first);
    assert_eq!(
        alone.timestamps[0],
        wire::timestamp(at("2019-01-02T14:30:00Z"))
    );
    let names: Vec<&str> = alone.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sma_20",
            "bbands_20_2_2.upper",
            "bbands_20_2_2.middle",
            "bbands_20_2_2.lower"
        ]
    );
    let sma = values(&alone.series[0]);
    assert_eq!(alone.series[0].lookback, 19);
    assert!(
        sma[..19].iter().all(Option::is_none),
        "TA-Lib's warm-up is absent"
    );
    // The 20-bar mean of the CSV's closes, computed independently.
    for (k, v) in sma.iter().enumerate().skip(19) {
        let window = &closes[first + k - 19..=first + k];
        let mean = window.iter().sum::<f64>() / 20.0;
        let got = v.unwrap();
        assert!(
            ((got - mean) / mean).abs() < 1e-12,
            "bar {k}: {got} vs {mean}"
        );
    }
    assert_eq!(values(&alone.series[2]), sma, "the middle band is the SMA");

    request.warm_up_from_history = true;
    let warm = indicators(&mut app, request).await.unwrap();
    assert_eq!(warm.timestamps, alone.timestamps);
    let warm_sma = values(&warm.series[0]);
    assert!(
        warm_sma.iter().all(Option::is_some),
        "defined from the start of the range"
    );
    // The same averages, up to the running sum's rounding over a longer series.
    for (w, a) in warm_sma[19..].iter().zip(&sma[19..]) {
        let (w, a) = (w.unwrap(), a.unwrap());
        assert!(((w - a) / a).abs() < 1e-12, "{w} vs {a}");
    }
    assert_eq!(warm.series[0].lookback, 0);
}

#[tokio::test]
async fn bad_indicator_requests_get_clear_errors() {
    let mut app = ready().await;
    let range = |start: &str, end: &str| (Some(ts(start)), Some(ts(end)));
    let (start, end) = range("2019-01-01T00:00:00Z", "2019-03-01T00:00:00Z");
    let base = pb::GetIndicatorsRequest {
        symbol: "SPX".into(),
        start,
        end,
        indicators: vec![sma_spec(20.0)],
        ..Default::default()
    };
    let check = |status: tonic::Status, code: tonic::Code, needles: &[&str]| {
        assert_eq!(status.code(), code, "{status:?}");
        for needle in needles {
            assert!(
                status.message().contains(needle),
                "{:?} lacks {needle:?}",
                status.message()
            );
        }
    };

    let mut unknown = base.clone();
    unknown.indicators = vec![pb::IndicatorSpec {
        indicator: 99,
        ..Default::default()
    }];
    check(
        indicators(&mut app, unknown).await.unwrap_err(),
        tonic::Code::InvalidArgument,
        &["indicators", "unknown indicator", "sma, ema"],
    );

    let mut long = base.clone();
    long.indicators = vec![sma_spec(200.0)];
    check(
        indicators(&mut app, long).await.unwrap_err(),
        tonic::Code::InvalidArgument,
        &[
            "indicators",
            "needs at least 200 bars",
            "longer than the data",
        ],
    );

    let mut typo = base.clone();
    typo.indicators[0].params = [("perod".to_owned(), 3.0)].into();
    check(
        indicators(&mut app, typo).await.unwrap_err(),
        tonic::Code::InvalidArgument,
        &["unknown parameter \"perod\""],
    );

    let mut inverted = base.clone();
    (inverted.start, inverted.end) = (base.end, base.start);
    check(
        indicators(&mut app, inverted).await.unwrap_err(),
        tonic::Code::InvalidArgument,
        &["end:", "inverted"],
    );

    let mut missing = base.clone();
    missing.symbol = "NOPE".into();
    check(
        indicators(&mut app, missing).await.unwrap_err(),
        tonic::Code::NotFound,
        &["NOPE"],
    );

    let anonymous = app.client.get_indicators(base).await.unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
}

async fn statistics(
    app: &mut TestApp,
    r: pb::GetStatisticsRequest,
) -> Result<pb::GetStatisticsResponse, tonic::Status> {
    app.client
        .get_statistics(as_user(Uuid::now_v7(), r))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn statistics_cover_the_range_and_reject_bad_windows() {
    let mut app = ready().await;
    let rows = sample_rows();
    let in_range: Vec<f64> = rows
        .iter()
        .filter(|r| r.0.as_str() >= "2010-01-01" && r.0.as_str() < "2020-01-01")
        .map(|r| r.1[3])
        .collect();
    let request = pb::GetStatisticsRequest {
        symbol: "SPX".into(),
        benchmark: "SPX".into(),
        start: Some(ts("2010-01-01T00:00:00Z")),
        end: Some(ts("2020-01-01T00:00:00Z")),
        risk_free_rate: 0.02,
        rolling_window: 63,
        ..Default::default()
    };
    let response = statistics(&mut app, request.clone()).await.unwrap();
    let s = response.statistics.unwrap();
    assert_eq!(s.periods as usize, in_range.len() - 1);
    let total = in_range[in_range.len() - 1] / in_range[0] - 1.0;
    assert!(
        (s.cumulative_return - total).abs() < 1e-12,
        "{} vs {total}",
        s.cumulative_return
    );
    assert!((s.beta.unwrap() - 1.0).abs() < 1e-12, "against itself");
    assert!((s.correlation.unwrap() - 1.0).abs() < 1e-12);
    assert!(s.alpha.unwrap().abs() < 1e-12);
    assert!(s.sharpe.unwrap() > 0.0 && s.max_drawdown.as_ref().unwrap().depth < 0.0);
    assert_eq!(s.var_level, 0.95);
    assert!(s.value_at_risk < 0.0 && s.conditional_value_at_risk < s.value_at_risk);
    let rolling = response.rolling.unwrap();
    assert_eq!(rolling.timestamps.len(), in_range.len() - 1);
    let names: Vec<&str> = rolling.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rolling_return",
            "rolling_volatility",
            "rolling_sharpe",
            "rolling_sortino",
            "drawdown",
            "rolling_beta"
        ]
    );
    let sharpe = &rolling.series[2].values;
    assert!(sharpe[..62].iter().all(|v| v.value.is_none()) && sharpe[62].value.is_some());

    let mut long = request.clone();
    long.rolling_window = 5_000;
    let err = statistics(&mut app, long).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("rolling_window: is longer than the data"),
        "{}",
        err.message()
    );

    let mut level = request.clone();
    level.var_level = 1.5;
    assert!(
        statistics(&mut app, level)
            .await
            .unwrap_err()
            .message()
            .starts_with("var_level:")
    );

    let mut unknown = request;
    unknown.benchmark = "NOPE".into();
    let err = statistics(&mut app, unknown).await.unwrap_err();
    assert!(err.message().starts_with("benchmark:"), "{}", err.message());
}

#[tokio::test]
async fn trends_measure_the_last_year_and_rank_by_momentum() {
    let mut app = ready().await;
    let rows = sample_rows();
    let upto: Vec<&(String, [f64; 5])> = rows
        .iter()
        .filter(|r| r.0.as_str() <= "2020-02-19")
        .collect();
    let n = upto.len();
    let response = app
        .client
        .get_trends(as_user(
            Uuid::now_v7(),
            pb::GetTrendsRequest {
                symbols: vec!["SPX".into(), "NOPE".into()],
                as_of: Some(ts("2020-02-19T14:30:00Z")),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.missing, ["NOPE"]);
    let t = &response.trends[0];
    assert_eq!(
        t.as_of,
        Some(ts("2020-02-19T14:30:00Z")),
        "the bar starting exactly at as_of counts"
    );
    let close = upto[n - 1].1[3];
    assert_eq!(t.close, close);
    let high = upto[n - 252..]
        .iter()
        .map(|r| r.1[1])
        .fold(f64::MIN, f64::max);
    assert_eq!(t.high_52w, high);
    assert!((t.from_52w_high - (close / high - 1.0)).abs() < 1e-15);
    let momentum = close / upto[n - 1 - 252].1[3] - 1.0;
    assert!((t.momentum.unwrap() - momentum).abs() < 1e-12);
    assert_eq!(t.momentum_rank, 1);
    // February 2020, before the crash: the 50-day average above the 200-day one.
    assert_eq!(t.ma_regime(), pb::MaRegime::Bullish);
    assert_eq!(t.last_cross(), pb::CrossKind::Golden);
    assert!(t.volatility.is_some() && t.volatility_percentile.is_some());

    let bad = app
        .client
        .get_trends(as_user(
            Uuid::now_v7(),
            pb::GetTrendsRequest {
                short_window: 300,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert!(
        bad.message().starts_with("short_window:"),
        "{}",
        bad.message()
    );
}
