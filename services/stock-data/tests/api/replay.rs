//! The replay feed: stored history played forward as outbox events.

use std::time::Duration;

use mirai_platform::config::ServiceConfig;
use mirai_platform::testing::TestDatabase;
use mirai_platform::wire;
use mirai_proto::events::v1::{BarClosed, PriceUpdated};
use mirai_proto::stock::v1::{
    GetReplayStatusRequest, ReplayState, StartReplayRequest, StopReplayRequest,
};
use prost::Message as _;
use tokio_util::sync::CancellationToken;

use crate::helpers::Client;

async fn start() -> (Client, sqlx::PgPool, CancellationToken, TestDatabase) {
    let db = TestDatabase::create("stock_data").await;
    let config = ServiceConfig::for_tests("mirai-stock-data", db.url());
    let app = mirai_stock_data::startup::build(&config).await.unwrap();
    mirai_stock_data::bars::load_sample(&app.pool)
        .await
        .unwrap();
    let pool = app.pool.clone();
    let addr = app.grpc_addr();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = crate::helpers::connect(addr).await;
    (client, pool, stop, db)
}

fn ts(rfc3339: &str) -> prost_types::Timestamp {
    wire::timestamp(
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .to_utc(),
    )
}

async fn wait_for(client: &mut Client, state: ReplayState) {
    for _ in 0..500 {
        let status = client
            .get_replay_status(GetReplayStatusRequest {
                symbol: "SPX".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        if status.state == state as i32 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("replay never reached {state:?}");
}

/// Payloads of one event type in the outbox, in order.
async fn outbox(pool: &sqlx::PgPool, event_type: &str) -> Vec<Vec<u8>> {
    sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id")
        .bind(event_type)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn first_week() -> StartReplayRequest {
    StartReplayRequest {
        symbol: "spx".into(),
        from: Some(ts("2000-01-03T00:00:00Z")),
        to: Some(ts("2000-01-10T00:00:00Z")),
        bars_per_second: 1000.0,
        seed: 7,
        quotes_per_bar: 4,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_replay_emits_each_bar_with_its_quotes_through_the_outbox() {
    let (mut client, pool, stop, _db) = start().await;
    let started = client
        .start_replay(first_week())
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(started.bars_total, 5);
    wait_for(&mut client, ReplayState::Finished).await;

    let closed: Vec<BarClosed> = outbox(&pool, "mirai.stock.bar.closed.v1")
        .await
        .iter()
        .map(|p| BarClosed::decode(p.as_slice()).unwrap())
        .collect();
    assert_eq!(closed.len(), 5);
    assert_eq!(closed[0].previous_close, None);
    for pair in closed.windows(2) {
        assert_eq!(
            pair[1].previous_close,
            Some(pair[0].bar.as_ref().unwrap().close)
        );
    }
    assert!(closed.iter().all(|c| c.source == "replay"));
    assert_eq!(closed[0].bar.as_ref().unwrap().open, 1469.25);

    // 4 synthetic quotes + 1 at the close per bar, each inside its bar's range.
    let quotes: Vec<PriceUpdated> = outbox(&pool, "mirai.stock.price.updated.v1")
        .await
        .iter()
        .map(|p| PriceUpdated::decode(p.as_slice()).unwrap())
        .collect();
    assert_eq!(quotes.len(), 25);
    for (bar, quotes) in closed.iter().zip(quotes.chunks(5)) {
        let bar = bar.bar.as_ref().unwrap();
        assert!(
            quotes
                .iter()
                .all(|q| q.price >= bar.low && q.price <= bar.high)
        );
        assert_eq!(quotes[4].price, bar.close);
    }

    // In the outbox (the relay's order for the one ordering key), each bar's quotes, then its
    // bar.closed, then the quote at its close, bar after bar; several bars may share a
    // transaction when they are due together.
    let types: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM outbox
         WHERE event_type IN ('mirai.stock.price.updated.v1', 'mirai.stock.bar.closed.v1')
         ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let per_bar = [
        vec!["mirai.stock.price.updated.v1"; 4],
        vec!["mirai.stock.bar.closed.v1", "mirai.stock.price.updated.v1"],
    ]
    .concat();
    assert_eq!(types, per_bar.repeat(5));

    // Same seed, speed and range: the same events.
    client.start_replay(first_week()).await.unwrap();
    wait_for(&mut client, ReplayState::Finished).await;
    let all = outbox(&pool, "mirai.stock.price.updated.v1").await;
    assert_eq!(all[..25], all[25..], "deterministic for one seed");
    stop.cancel();
}

#[tokio::test]
async fn a_running_replay_can_be_stopped_and_not_started_twice() {
    let (mut client, _pool, stop, _db) = start().await;
    let slow = StartReplayRequest {
        symbol: "SPX".into(),
        bars_per_second: 5.0,
        ..Default::default()
    };
    client.start_replay(slow.clone()).await.unwrap();
    let twice = client.start_replay(slow).await.unwrap_err();
    assert_eq!(twice.code(), tonic::Code::AlreadyExists);
    let stopped = client
        .stop_replay(StopReplayRequest {
            symbol: "SPX".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(stopped.state, ReplayState::Stopped as i32);
    assert!(stopped.bars_emitted < stopped.bars_total);
    for (request, code) in [
        (
            StartReplayRequest {
                symbol: "SPX".into(),
                bars_per_second: 5000.0,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            StartReplayRequest {
                symbol: "SPX".into(),
                from: Some(ts("2030-01-01T00:00:00Z")),
                ..Default::default()
            },
            tonic::Code::FailedPrecondition,
        ),
        (
            StartReplayRequest {
                symbol: "NOPE".into(),
                ..Default::default()
            },
            tonic::Code::NotFound,
        ),
    ] {
        assert_eq!(client.start_replay(request).await.unwrap_err().code(), code);
    }
    stop.cancel();
}

#[tokio::test]
async fn quotes_come_from_the_latest_bars_and_follow_a_replay() {
    let (mut client, _pool, stop, _db) = start().await;
    let rows: Vec<f64> = include_str!("../../sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    let quote = |client: &mut Client| {
        let mut client = client.clone();
        async move {
            client
                .get_quote(mirai_proto::stock::v1::GetQuoteRequest {
                    symbol: "SPX".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .quote
                .unwrap()
        }
    };
    let latest = quote(&mut client).await;
    let (last, before) = (rows[rows.len() - 1], rows[rows.len() - 2]);
    assert_eq!((latest.last_price, latest.previous_close), (last, before));
    assert!((latest.change_percent - (last - before) / before * 100.0).abs() < 1e-12);
    assert_eq!(latest.source, "sample");

    client.start_replay(first_week()).await.unwrap();
    wait_for(&mut client, ReplayState::Finished).await;
    let replayed = quote(&mut client).await;
    assert_eq!(replayed.source, "replay");
    assert_eq!(
        (replayed.last_price, replayed.previous_close),
        (rows[4], rows[3])
    );

    let batch = client
        .batch_get_quotes(mirai_proto::stock::v1::BatchGetQuotesRequest {
            symbols: vec!["SPX".into(), "NOPE".into(), "spx".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.quotes.len(), 1);
    assert_eq!(batch.missing, vec!["NOPE"]);
    stop.cancel();
}

#[tokio::test]
async fn a_quote_stream_sends_the_snapshot_then_every_update() {
    let (mut client, _pool, stop, _db) = start().await;
    let mut stream = client
        .stream_quotes(mirai_proto::stock::v1::StreamQuotesRequest {
            symbols: vec!["SPX".into()],
            skip_snapshot: false,
        })
        .await
        .unwrap()
        .into_inner();
    let snapshot = stream.message().await.unwrap().unwrap();
    assert!(snapshot.snapshot);
    assert_eq!(
        snapshot.quote.unwrap().last_time,
        Some(ts("2020-04-17T20:00:00Z"))
    );

    client.start_replay(first_week()).await.unwrap();
    let closes: Vec<f64> = include_str!("../../sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .take(5)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    for close in closes {
        let update = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an update per replayed bar")
            .unwrap()
            .unwrap();
        assert!(!update.snapshot);
        assert_eq!(update.dropped, 0);
        assert_eq!(update.quote.unwrap().last_price, close);
    }

    let unknown = client
        .stream_quotes(mirai_proto::stock::v1::StreamQuotesRequest {
            symbols: vec!["NOPE".into()],
            skip_snapshot: false,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    stop.cancel();
}
