//! Bars: the sample loader and range queries with aggregation, against real PostgreSQL.

use mirai_platform::app::ServiceApp;
use mirai_platform::config::ServiceConfig;
use mirai_platform::testing::TestDatabase;
use mirai_platform::wire;
use mirai_proto::stock::v1::{Bar, GetBarsRequest, Timeframe};
use tokio_util::sync::CancellationToken;

/// The bundled CSV, parsed independently of the service: (date, open, high, low, close, volume).
fn csv_rows() -> Vec<(String, f64, f64, f64, f64, f64)> {
    include_str!("../../sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let n = |i: usize| f[i].parse::<f64>().unwrap();
            (f[0].to_owned(), n(1), n(2), n(3), n(4), n(6))
        })
        .collect()
}

struct Running {
    client: crate::helpers::Client,
    app_pool: sqlx::PgPool,
    admin: std::net::SocketAddr,
    stop: CancellationToken,
    _db: TestDatabase,
}

async fn start() -> Running {
    let db = TestDatabase::create("stock_data").await;
    let config = ServiceConfig::for_tests("mirai-stock-data", db.url());
    let app: ServiceApp = mirai_stock_data::startup::build(&config).await.unwrap();
    let app_pool = app.pool.clone();
    let addr = app.grpc_addr();
    let admin = app.admin_addr();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = crate::helpers::connect(addr).await;
    Running {
        client,
        app_pool,
        admin,
        stop,
        _db: db,
    }
}

fn ts(rfc3339: &str) -> prost_types::Timestamp {
    wire::timestamp(
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .to_utc(),
    )
}

async fn bars(running: &mut Running, request: GetBarsRequest) -> (Vec<Bar>, String) {
    let response = running.client.get_bars(request).await.unwrap().into_inner();
    (response.bars, response.next_page_token)
}

#[tokio::test]
async fn the_sample_loads_once_and_daily_bars_start_at_the_new_york_open() {
    let mut running = start().await;
    let rows = csv_rows();
    let loaded = mirai_stock_data::bars::load_sample(&running.app_pool)
        .await
        .unwrap();
    assert_eq!(loaded, rows.len() as u64);
    let again = mirai_stock_data::bars::load_sample(&running.app_pool)
        .await
        .unwrap();
    assert_eq!(again, 0, "re-loading is idempotent");

    let (first, _) = bars(
        &mut running,
        GetBarsRequest {
            symbol: "spx".into(),
            limit: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.len(), 5);
    for (bar, row) in first.iter().zip(&rows) {
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close, bar.volume),
            (row.1, row.2, row.3, row.4, row.5)
        );
    }
    // 09:30 in New York: EST (UTC-5) in January, EDT (UTC-4) in July.
    assert_eq!(first[0].start, Some(ts("2000-01-03T14:30:00Z")));
    assert_eq!(first[0].end, Some(ts("2000-01-03T21:00:00Z")));
    let (july, _) = bars(
        &mut running,
        GetBarsRequest {
            symbol: "SPX".into(),
            start: Some(ts("2000-07-03T00:00:00Z")),
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(july[0].start, Some(ts("2000-07-03T13:30:00Z")));
    running.stop.cancel();
}

/// `mirai_cache_requests_total{cache="bars",result="hit"}` on the admin listener.
async fn bars_cache_hits(running: &Running) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", running.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(r#"mirai_cache_requests_total{cache="bars",result="hit"} "#))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn pages_are_served_from_memory_until_a_bar_of_their_symbol_changes() {
    let mut running = start().await;
    mirai_stock_data::bars::load_sample(&running.app_pool)
        .await
        .unwrap();
    let request = GetBarsRequest {
        symbol: "SPX".into(),
        limit: 3,
        ..Default::default()
    };
    let close = |bars: &[Bar]| bars[0].close;
    // Pages are kept once the cache listens for changes (it connects at start).
    let (first, _) = bars(&mut running, request.clone()).await;
    for _ in 0..100 {
        bars(&mut running, request.clone()).await;
        if bars_cache_hits(&running).await > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        bars_cache_hits(&running).await > 0,
        "the page was never served from memory"
    );

    // A change nobody announces (the trigger off) is not seen: the page comes from memory.
    let change = "UPDATE bars SET close = close + 1000 WHERE symbol = 'SPX' AND start_at = $1";
    let start = wire::datetime(first[0].start.as_ref().unwrap()).unwrap();
    let mut tx = running.app_pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE bars DISABLE TRIGGER bars_updated")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(change)
        .bind(start)
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE bars ENABLE TRIGGER bars_updated")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (cached, _) = bars(&mut running, request.clone()).await;
    assert_eq!(close(&cached), close(&first));

    // Any write to the symbol's bars (here plain SQL, as another replica's) retires its pages.
    sqlx::query(change)
        .bind(start)
        .execute(&running.app_pool)
        .await
        .unwrap();
    let mut seen = close(&cached);
    for _ in 0..100 {
        seen = close(&bars(&mut running, request.clone()).await.0);
        if seen != close(&first) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, close(&first) + 2000.0);
    running.stop.cancel();
}

#[tokio::test]
async fn weekly_bars_aggregate_and_pages_do_not_overlap() {
    let mut running = start().await;
    mirai_stock_data::bars::load_sample(&running.app_pool)
        .await
        .unwrap();
    let rows = csv_rows();
    // The first week of 2000 (Mon 3 .. Fri 7 January), computed from the CSV.
    let week = &rows[..5];
    let (weekly, token) = bars(
        &mut running,
        GetBarsRequest {
            symbol: "SPX".into(),
            timeframe: Timeframe::OneWeek.into(),
            limit: 2,
            ..Default::default()
        },
    )
    .await;
    let first = &weekly[0];
    assert_eq!(first.open, week[0].1);
    assert_eq!(
        first.high,
        week.iter().map(|r| r.2).fold(f64::MIN, f64::max)
    );
    assert_eq!(first.low, week.iter().map(|r| r.3).fold(f64::MAX, f64::min));
    assert_eq!(first.close, week[4].4);
    assert_eq!(first.volume, week.iter().map(|r| r.5).sum::<f64>());
    assert_eq!(first.source_bar_count, 5);
    assert!(first.complete);

    // Walk every weekly page: buckets strictly increase and all daily bars are covered once.
    let (mut all, mut token) = (weekly, token);
    while !token.is_empty() {
        let (page, next) = bars(
            &mut running,
            GetBarsRequest {
                symbol: "SPX".into(),
                timeframe: Timeframe::OneWeek.into(),
                limit: 500,
                page_token: token,
                ..Default::default()
            },
        )
        .await;
        all.extend(page);
        token = next;
    }
    let covered: u32 = all.iter().map(|b| b.source_bar_count).sum();
    assert_eq!(covered as usize, rows.len());
    assert!(
        all.windows(2)
            .all(|w| w[0].start.as_ref().unwrap().seconds < w[1].start.as_ref().unwrap().seconds)
    );

    // Newest first, monthly: the last month of the data is April 2020 (1..17 April).
    let (monthly, _) = bars(
        &mut running,
        GetBarsRequest {
            symbol: "SPX".into(),
            timeframe: Timeframe::OneMonth.into(),
            newest_first: true,
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    let april: Vec<_> = rows.iter().filter(|r| r.0.starts_with("2020-04")).collect();
    assert_eq!(monthly[0].source_bar_count as usize, april.len());
    assert_eq!(monthly[0].close, april.last().unwrap().4);
    running.stop.cancel();
}

#[tokio::test]
async fn bad_bar_requests_are_refused_clearly() {
    let mut running = start().await;
    mirai_stock_data::bars::load_sample(&running.app_pool)
        .await
        .unwrap();
    let cases = [
        (
            GetBarsRequest {
                symbol: "SPX".into(),
                start: Some(ts("2010-01-01T00:00:00Z")),
                end: Some(ts("2009-01-01T00:00:00Z")),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            GetBarsRequest {
                symbol: "SPX".into(),
                limit: 10_001,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            GetBarsRequest {
                symbol: "NOPE".into(),
                ..Default::default()
            },
            tonic::Code::NotFound,
        ),
        (
            GetBarsRequest {
                symbol: "SPX".into(),
                page_token: "garbage!".into(),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
    ];
    for (request, code) in cases {
        let status = running.client.get_bars(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    running.stop.cancel();
}
