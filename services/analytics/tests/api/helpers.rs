//! Shared test plumbing: stock-data and analytics in-process on port 0, each with a fresh
//! database, on one set of emulator topics; clients that carry a principal; small helpers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use google_cloud_pubsub::model::Message;
use mirai_analytics::config::Config;
use mirai_platform::auth::Role;
use mirai_platform::events::Event;
use mirai_platform::testing::TestDatabase;
use mirai_platform::wire;
use mirai_proto::analytics::v1 as pb;
use mirai_proto::analytics::v1::analytics_service_client::AnalyticsServiceClient;
use mirai_proto::stock::v1 as stock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub type Client = AnalyticsServiceClient<mirai_platform::testing::TestChannel>;

/// The S&P 500 sample stock-data ships, parsed independently: (date, open, high, low, close,
/// volume).
pub fn sample_rows() -> Vec<(String, [f64; 5])> {
    include_str!("../../../stock-data/sample/sp500-2000.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let n = |i: usize| f[i].parse::<f64>().unwrap();
            (f[0].to_owned(), [n(1), n(2), n(3), n(4), n(6)])
        })
        .collect()
}

pub struct TestApp {
    pub client: Client,
    pub pool: sqlx::PgPool,
    pub config: Config,
    pub stop: CancellationToken,
    _db: TestDatabase,
    _stock_db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// stock-data (with its S&P 500 sample loaded as SPX when `sample`) and analytics configured
/// by `configure`.
pub async fn spawn_with(sample: bool, configure: impl FnOnce(&mut Config)) -> TestApp {
    let stop = CancellationToken::new();
    let stock_db = TestDatabase::create("analytics_stock").await;
    let stock_config = mirai_stock_data::config::Config::for_tests(stock_db.url());
    let stock_app = mirai_stock_data::startup::build_with(&stock_config)
        .await
        .unwrap();
    if sample {
        mirai_stock_data::bars::load_sample(stock_app.pool())
            .await
            .unwrap();
    }
    let stock_addr = stock_app.grpc_addr();
    tokio::spawn(stock_app.run_until_stopped(stop.clone()));

    let db = TestDatabase::create("analytics").await;
    let mut config = Config::for_tests(db.url(), &format!("http://{stock_addr}"));
    configure(&mut config);
    let app = mirai_analytics::startup::build_with(&config).await.unwrap();
    let pool = app.pool.clone();
    let addr = app.grpc_addr();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = Client::new(mirai_platform::testing::connect(format!("http://{addr}")).await);
    TestApp {
        client,
        pool,
        config,
        stop,
        _db: db,
        _stock_db: stock_db,
    }
}

/// The S&P 500 sample in stock-data, no start-up backfill (tests choose when to backfill).
pub async fn spawn() -> TestApp {
    spawn_with(true, |c| c.backfill_on_start = false).await
}

/// `message` as `user` (role user) would send it through the gateway.
pub fn as_user<T>(user: Uuid, message: T) -> tonic::Request<T> {
    with_roles(user, &[Role::User], message)
}

pub fn as_admin<T>(message: T) -> tonic::Request<T> {
    with_roles(Uuid::now_v7(), &[Role::User, Role::Admin], message)
}

fn with_roles<T>(user: Uuid, roles: &[Role], message: T) -> tonic::Request<T> {
    mirai_platform::testing::request_as(user, roles, message)
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

pub fn ts(rfc3339: &str) -> prost_types::Timestamp {
    wire::timestamp(at(rfc3339))
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 60 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    mirai_platform::testing::eventually(what, Duration::from_secs(60), check).await
}

impl TestApp {
    /// Backfills `symbol` (daily) as an admin.
    pub async fn backfill(&mut self, symbol: &str) -> pb::BackfillResponse {
        self.client
            .backfill(as_admin(pb::BackfillRequest {
                symbol: symbol.into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
    }

    /// Publishes `event` on its topic as `source` would; `again` republishes a message as is
    /// (same ce-id: a redelivery).
    pub async fn publish<E: Event>(
        &self,
        source: &str,
        event: &E,
        again: Option<Message>,
    ) -> Message {
        mirai_platform::testing::publish(&self.config.service.pubsub, source, event, again).await
    }

    /// Inbox rows of handler `name`.
    pub async fn processed(&self, name: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE handler = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Waits until handler `name` has processed `n` events.
    pub async fn wait_processed(&self, name: &str, n: i64) {
        eventually(&format!("{n} events through {name}"), || async {
            (self.processed(name).await >= n).then_some(())
        })
        .await;
    }

    /// The stored daily closes of `symbol` by start, oldest first.
    pub async fn closes(&self, symbol: &str) -> Vec<(DateTime<Utc>, f64)> {
        sqlx::query_as("SELECT start_at, close FROM bars WHERE symbol = $1 ORDER BY start_at")
            .bind(symbol)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Payloads of one event type in analytics' outbox, in order.
    pub async fn outbox(&self, event_type: &str) -> Vec<Vec<u8>> {
        sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id")
            .bind(event_type)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

/// A daily bar of `symbol` at `start` with every price `close`.
pub fn bar_event(symbol: &str, start: &str, close: f64) -> mirai_proto::events::v1::BarClosed {
    mirai_proto::events::v1::BarClosed {
        bar: Some(stock::Bar {
            symbol: symbol.into(),
            timeframe: stock::Timeframe::OneDay.into(),
            start: Some(ts(start)),
            open: close,
            high: close,
            low: close,
            close,
            volume: 1000.0,
            complete: true,
            source_bar_count: 1,
            ..Default::default()
        }),
        adjustment: stock::Adjustment::Raw.into(),
        source: "replay".into(),
        previous_close: None,
    }
}
