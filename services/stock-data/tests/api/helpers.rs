//! Shared test plumbing: the real service on port 0 with a fresh database and its own Pub/Sub
//! names, a client, and small helpers.

use mirai_platform::testing::{AsAdmin, TestDatabase};
use mirai_platform::wire;
use mirai_proto::stock::v1::import_bars_request::Part;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use mirai_proto::stock::v1::{
    AddSymbolRequest, AssetType, ImportBarsRequest, ImportBarsResponse, ImportFormat,
    ImportOptions, Symbol,
};
use mirai_stock_data::config::Config;
use tokio_util::sync::CancellationToken;

/// A client whose every call carries an admin principal, as the gateway passes it (unless
/// the request carries its own identity token: [`mirai_platform::testing::request_as`]).
pub type Client = StockDataServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AsAdmin>,
>;

/// An admin client of the service at `addr`.
pub async fn connect(addr: std::net::SocketAddr) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    StockDataServiceClient::with_interceptor(channel, AsAdmin)
}

pub struct TestApp {
    pub client: Client,
    pub addr: std::net::SocketAddr,
    pub pool: sqlx::PgPool,
    pub config: Config,
    pub stop: CancellationToken,
    _db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The service with `configure` applied to a test configuration.
pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::create("stock_data").await;
    let mut config = Config::for_tests(db.url());
    configure(&mut config);
    let app = mirai_stock_data::startup::build_with(&config)
        .await
        .unwrap();
    let pool = app.pool().clone();
    let addr = app.grpc_addr();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = connect(addr).await;
    TestApp {
        client,
        addr,
        pool,
        config,
        stop,
        _db: db,
    }
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

impl TestApp {
    /// Lists a symbol (the admin RPC).
    pub async fn list(&mut self, ticker: &str, mic: &str, asset_type: AssetType) {
        self.client
            .add_symbol(AddSymbolRequest {
                symbol: Some(Symbol {
                    symbol: ticker.into(),
                    name: format!("{ticker} Inc."),
                    exchange_mic: mic.into(),
                    currency: "USD".into(),
                    asset_type: asset_type.into(),
                    ..Default::default()
                }),
                actor_user_id: String::new(),
            })
            .await
            .unwrap();
    }

    /// Imports `data` with `options`, in small chunks so lines cross chunk boundaries.
    pub async fn import(
        &mut self,
        options: ImportOptions,
        data: &str,
    ) -> Result<ImportBarsResponse, tonic::Status> {
        let mut messages = vec![ImportBarsRequest {
            part: Some(Part::Options(options)),
        }];
        for chunk in data.as_bytes().chunks(64 * 1024) {
            messages.push(ImportBarsRequest {
                part: Some(Part::Data(chunk.to_vec())),
            });
        }
        self.client
            .clone()
            .import_bars(futures::stream::iter(messages))
            .await
            .map(|r| r.into_inner())
    }

    /// Payloads of one event type in the outbox, in order.
    pub async fn outbox(&self, event_type: &str) -> Vec<Vec<u8>> {
        sqlx::query_scalar("SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id")
            .bind(event_type)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

pub fn csv_options(symbol: &str) -> ImportOptions {
    ImportOptions {
        format: ImportFormat::Csv.into(),
        default_symbol: symbol.into(),
        ..Default::default()
    }
}

pub fn ts(rfc3339: &str) -> prost_types::Timestamp {
    wire::timestamp(at(rfc3339))
}

pub fn at(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .to_utc()
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    mirai_platform::testing::eventually(what, std::time::Duration::from_secs(30), check).await
}
