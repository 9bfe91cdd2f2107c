//! Aggregation against values computed here, pages under concurrent inserts, and quote
//! streams that do not wait for each other.

use std::collections::BTreeMap;
use std::time::Duration;

use mirai_proto::stock::v1::{
    AssetType, GetBarsRequest, ImportFormat, ImportOptions, StartReplayRequest,
    StreamQuotesRequest, Timeframe,
};

use crate::helpers::{Client, at, spawn, ts};

/// The replayed range of the stream test: 2000 .. 2007 (about 2,000 daily bars).
const REPLAY_END: &str = "2008-01-01T00:00:00Z";

/// (start seconds, open, high, low, close, volume) of 390 minute bars on 2024-06-03 (EDT),
/// from a seeded generator, with integer volumes so sums are exact.
fn day_of_minutes() -> Vec<(i64, f64, f64, f64, f64, f64)> {
    let open_at = at("2024-06-03T13:30:00Z").timestamp();
    let mut state: u64 = 42;
    let mut price = 50.0;
    (0..390)
        .map(|i| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (state >> 33) as f64 / (1u64 << 31) as f64; // [0, 1)
            let open = price;
            price = (price * (1.0 + (r - 0.5) / 100.0) * 100.0).round() / 100.0;
            let high = open.max(price) + ((state >> 20) % 7) as f64 / 100.0;
            let low = open.min(price) - ((state >> 10) % 5) as f64 / 100.0;
            (
                open_at + 60 * i,
                open,
                high,
                low,
                price,
                (100 + (state >> 40) % 900) as f64,
            )
        })
        .collect()
}

fn csv(rows: &[(i64, f64, f64, f64, f64, f64)]) -> String {
    let mut out = String::from("timestamp,open,high,low,close,volume\n");
    for (t, o, h, l, c, v) in rows {
        let at = chrono::DateTime::from_timestamp(*t, 0)
            .unwrap()
            .to_rfc3339();
        out.push_str(&format!("{at},{o},{h},{l},{c},{v}\n"));
    }
    out
}

fn minute_options() -> ImportOptions {
    ImportOptions {
        format: ImportFormat::Csv.into(),
        timeframe: Timeframe::OneMinute.into(),
        default_symbol: "ACME".into(),
        ..Default::default()
    }
}

async fn all_bars(client: &mut Client, timeframe: Timeframe) -> Vec<mirai_proto::stock::v1::Bar> {
    client
        .get_bars(GetBarsRequest {
            symbol: "ACME".into(),
            timeframe: timeframe.into(),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .bars
}

#[tokio::test]
async fn minute_bars_aggregate_to_independently_computed_buckets() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    let rows = day_of_minutes();
    let report = app.import(minute_options(), &csv(&rows)).await.unwrap();
    assert_eq!(report.rows_inserted, 390);
    for (timeframe, seconds) in [
        (Timeframe::FiveMinutes, 300),
        (Timeframe::FifteenMinutes, 900),
        (Timeframe::OneHour, 3600),
        (Timeframe::OneDay, 86_400),
    ] {
        // Buckets: whole multiples of the width in UTC for intraday (the trading day fits in
        // one UTC day, so the 1-day bucket is simply everything).
        let mut expected: BTreeMap<i64, (f64, f64, f64, f64, f64, u32)> = BTreeMap::new();
        for &(t, o, h, l, c, v) in &rows {
            let key = if seconds == 86_400 {
                0
            } else {
                t - t.rem_euclid(seconds)
            };
            let e = expected.entry(key).or_insert((o, h, l, c, 0.0, 0));
            e.1 = e.1.max(h);
            e.2 = e.2.min(l);
            e.3 = c;
            e.4 += v;
            e.5 += 1;
        }
        let got = all_bars(&mut app.client, timeframe).await;
        assert_eq!(got.len(), expected.len(), "{timeframe:?}");
        for (bar, (_, e)) in got.iter().zip(&expected) {
            assert_eq!(
                (
                    bar.open,
                    bar.high,
                    bar.low,
                    bar.close,
                    bar.volume,
                    bar.source_bar_count
                ),
                *e,
                "{timeframe:?} bucket at {:?}",
                bar.start
            );
        }
    }
    // The hour buckets start at whole hours: 13:00Z holds 13:30..13:59 (30 bars).
    let hours = all_bars(&mut app.client, Timeframe::OneHour).await;
    assert_eq!(hours[0].source_bar_count, 30);
}

#[tokio::test]
async fn pages_skip_and_repeat_nothing_while_bars_are_inserted() {
    let mut app = spawn().await;
    app.list("ACME", "XNAS", AssetType::Equity).await;
    let rows = day_of_minutes();
    // Every other minute now; the rest arrive while the pages are read.
    let (even, odd): (Vec<_>, Vec<_>) = rows.iter().partition(|r| (r.0 / 60) % 2 == 0);
    app.import(minute_options(), &csv(&even)).await.unwrap();
    let mut writer = app.client.clone();
    let late = csv(&odd);
    let inserting = tokio::spawn({
        let mut app_client = writer.clone();
        async move {
            // Import the odd minutes in small slices, interleaved with the reader.
            let lines: Vec<&str> = late.lines().skip(1).collect();
            for chunk in lines.chunks(15) {
                let body = format!(
                    "timestamp,open,high,low,close,volume\n{}\n",
                    chunk.join("\n")
                );
                let messages = vec![
                    mirai_proto::stock::v1::ImportBarsRequest {
                        part: Some(mirai_proto::stock::v1::import_bars_request::Part::Options(
                            minute_options(),
                        )),
                    },
                    mirai_proto::stock::v1::ImportBarsRequest {
                        part: Some(mirai_proto::stock::v1::import_bars_request::Part::Data(
                            body.into_bytes(),
                        )),
                    },
                ];
                app_client
                    .import_bars(futures::stream::iter(messages))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        }
    });
    let mut seen: Vec<i64> = Vec::new();
    let mut token = String::new();
    loop {
        let page = writer
            .get_bars(GetBarsRequest {
                symbol: "ACME".into(),
                timeframe: Timeframe::OneMinute.into(),
                limit: 10,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.bars.iter().map(|b| b.start.unwrap().seconds));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    inserting.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "no bar repeated, order kept"
    );
    for (t, ..) in &even {
        assert!(
            seen.contains(t),
            "bar {t} present from the start was skipped"
        );
    }
}

#[tokio::test]
async fn a_stalled_stream_does_not_delay_another() {
    let mut app = spawn().await;
    mirai_stock_data::bars::load_sample(&app.pool)
        .await
        .unwrap();
    let closes: Vec<f64> = include_str!("../../sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .filter(|l| &l[..4] < "2008")
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    let request = StreamQuotesRequest {
        symbols: vec!["SPX".into()],
        skip_snapshot: true,
    };
    // Opened and never read while the replay runs; a tiny HTTP/2 stream window makes it stall
    // at once instead of buffering megabytes in the client.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .initial_stream_window_size(Some(1024))
        .connect()
        .await
        .unwrap();
    let mut stalled = mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient::with_interceptor(channel, mirai_platform::testing::AsAdmin)
        .stream_quotes(request.clone())
        .await
        .unwrap()
        .into_inner();
    let mut reader = app
        .client
        .stream_quotes(request)
        .await
        .unwrap()
        .into_inner();
    app.client
        .start_replay(StartReplayRequest {
            symbol: "SPX".into(),
            bars_per_second: 1000.0,
            to: Some(ts(REPLAY_END)),
            ..Default::default()
        })
        .await
        .unwrap();
    // The reading stream gets every update, in order, with nothing dropped.
    for (i, close) in closes.iter().enumerate() {
        let update = tokio::time::timeout(Duration::from_secs(30), reader.message())
            .await
            .expect("the reader is not held up by the stalled stream")
            .unwrap()
            .unwrap();
        assert_eq!(update.quote.unwrap().last_price, *close, "update {i}");
        assert_eq!(update.dropped, 0);
    }
    // The stalled stream lost its oldest updates, and says how many.
    let mut dropped = 0;
    while let Ok(Ok(Some(update))) =
        tokio::time::timeout(Duration::from_secs(5), stalled.message()).await
    {
        dropped = update.dropped;
        if update.quote.unwrap().last_price == *closes.last().unwrap() {
            break;
        }
    }
    assert!(dropped > 0, "the stalled stream dropped nothing");
}
