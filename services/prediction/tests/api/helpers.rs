//! Starting stock-data and the prediction service in-process, each on port 0 with a fresh
//! database, sharing one set of topics on the Pub/Sub emulator.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use mirai_platform::events::pubsub::PubSubConfig;
use mirai_platform::testing::TestChannel;
use mirai_platform::testing::TestDatabase;
use mirai_prediction::config::Config;
use mirai_prediction::context::Context;
use mirai_proto::prediction::v1 as pb;
use mirai_proto::prediction::v1::prediction_service_client::PredictionServiceClient;
use mirai_proto::stock::v1 as stock;
use mirai_proto::stock::v1::stock_data_service_client::StockDataServiceClient;
use tokio_util::sync::CancellationToken;

pub type Client = PredictionServiceClient<TestChannel>;
pub type StockClient = StockDataServiceClient<TestChannel>;

/// (date, open, high, low, close, volume).
pub type DailyBar = (NaiveDate, f64, f64, f64, f64, f64);

pub const ADMIN_ID: &str = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// A request carrying an admin principal (what the gateway forwards).
pub fn admin<T>(message: T) -> tonic::Request<T> {
    as_user(message, ADMIN_ID, "user,admin")
}

/// A request carrying a principal with `roles` (comma-separated).
pub fn as_user<T>(message: T, user_id: &str, roles: &str) -> tonic::Request<T> {
    let roles: Vec<mirai_platform::auth::Role> =
        roles.split(',').map(|r| r.parse().unwrap()).collect();
    mirai_platform::testing::request_as(user_id, &roles, message)
}

pub fn model(version: &str) -> pb::ModelRef {
    pb::ModelRef {
        name: "spx-lstm".into(),
        version: version.into(),
    }
}

pub use mirai_platform::testing::eventually;

/// stock-data, running in-process.
pub struct StockData {
    pub url: String,
    pub client: StockClient,
    stop: CancellationToken,
    _task: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

impl StockData {
    /// Starts stock-data; with `sample`, SPX and the bundled S&P 500 history are loaded.
    pub async fn start(pubsub: &PubSubConfig, sample: bool) -> Self {
        let db = TestDatabase::create("prediction_stock").await;
        let mut config = mirai_stock_data::config::Config::for_tests(db.url());
        config.service.pubsub = pubsub.clone();
        let app = mirai_stock_data::startup::build_with(&config)
            .await
            .expect("stock-data builds");
        if sample {
            mirai_stock_data::bars::load_sample(app.pool())
                .await
                .expect("sample loads");
        }
        let url = format!("http://{}", app.grpc_addr());
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                app.run_until_stopped(stop).await.expect("stock-data runs");
            }
        });
        let client =
            StockDataServiceClient::new(mirai_platform::testing::connect(url.clone()).await);
        Self {
            url,
            client,
            stop,
            _task: task,
            _db: db,
        }
    }

    /// Lists `symbol` (NYSE equity) and imports daily bars `(date, open, high, low, close,
    /// volume)`.
    pub async fn import_daily(&self, symbol: &str, bars: &[DailyBar]) {
        self.import_many(&[(symbol.to_owned(), bars.to_vec())])
            .await;
    }

    /// Lists every symbol and imports all their bars in one upload.
    pub async fn import_many(&self, series: &[(String, Vec<DailyBar>)]) {
        let mut client = self.client.clone();
        let mut csv = String::from("symbol,timestamp,open,high,low,close,volume\n");
        for (symbol, bars) in series {
            client
                .add_symbol(admin(stock::AddSymbolRequest {
                    symbol: Some(stock::Symbol {
                        symbol: symbol.clone(),
                        name: format!("{symbol} Inc."),
                        exchange_mic: "XNYS".into(),
                        currency: "USD".into(),
                        asset_type: stock::AssetType::Equity.into(),
                        ..Default::default()
                    }),
                    actor_user_id: ADMIN_ID.into(),
                }))
                .await
                .expect("symbol listed");
            for (d, o, h, l, c, v) in bars {
                csv.push_str(&format!("{symbol},{d},{o},{h},{l},{c},{v}\n"));
            }
        }
        let messages = vec![
            stock::ImportBarsRequest {
                part: Some(stock::import_bars_request::Part::Options(
                    stock::ImportOptions {
                        format: stock::ImportFormat::Csv.into(),
                        timeframe: stock::Timeframe::OneDay.into(),
                        ..Default::default()
                    },
                )),
            },
            stock::ImportBarsRequest {
                part: Some(stock::import_bars_request::Part::Data(csv.into_bytes())),
            },
        ];
        let report = client
            .import_bars(admin(futures::stream::iter(messages)))
            .await
            .expect("import")
            .into_inner();
        assert_eq!(report.rows_rejected, 0, "{:?}", report.errors);
    }

    /// Replays `symbol`'s stored bars with start in [from, to) as live bar closes.
    pub async fn replay(&self, symbol: &str, from: DateTime<Utc>, to: DateTime<Utc>) {
        self.client
            .clone()
            .start_replay(admin(stock::StartReplayRequest {
                symbol: symbol.into(),
                timeframe: stock::Timeframe::OneDay.into(),
                from: Some(mirai_platform::wire::timestamp(from)),
                to: Some(mirai_platform::wire::timestamp(to)),
                bars_per_second: 1000.0,
                actor_user_id: ADMIN_ID.into(),
                ..Default::default()
            }))
            .await
            .expect("replay starts");
    }
}

impl Drop for StockData {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Deterministic synthetic daily bars: `n` weekdays from 2021-01-04, a seeded random walk.
pub fn synthetic_bars(seed: u64, n: usize) -> Vec<DailyBar> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut date = NaiveDate::from_ymd_opt(2021, 1, 4).unwrap();
    let mut close: f64 = 50.0 + 100.0 * next();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        use chrono::Datelike as _;
        if date.weekday().number_from_monday() <= 5 {
            let open = close * (1.0 + (next() - 0.5) * 0.01);
            close = (open * (1.0 + (next() - 0.5) * 0.04) * 100.0).round() / 100.0;
            let high = open.max(close) * (1.0 + next() * 0.01);
            let low = open.min(close) * (1.0 - next() * 0.01);
            let volume = (1_000_000.0 * (0.5 + next())).round();
            let r = |x: f64| (x * 100.0).round() / 100.0;
            out.push((
                date,
                r(open),
                r(high).max(r(open)).max(close),
                r(low).min(r(open)).min(close),
                close,
                volume,
            ));
        }
        date = date.succ_opt().unwrap();
    }
    out
}

/// The prediction service under test, with its stock-data.
pub struct TestApp {
    pub client: Client,
    pub admin_url: String,
    pub pool: sqlx::PgPool,
    pub context: Arc<Context>,
    pub stock: StockData,
    stop: CancellationToken,
    _task: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

/// How to start the service.
pub struct Options {
    /// Load SPX and its history into stock-data.
    pub sample: bool,
    /// A models folder other than the checkout's.
    pub models_dir: Option<PathBuf>,
    /// Last changes to the configuration.
    pub tweak: Box<dyn FnOnce(&mut Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sample: true,
            models_dir: None,
            tweak: Box::new(|_| {}),
        }
    }
}

pub async fn spawn(options: Options) -> TestApp {
    let pubsub = PubSubConfig::for_tests();
    let stock = StockData::start(&pubsub, options.sample).await;
    let db = TestDatabase::create("prediction").await;
    let mut config = Config::for_tests(db.url(), &stock.url);
    config.service.pubsub = pubsub;
    if let Some(dir) = &options.models_dir {
        config.models_dir = dir.clone();
    }
    (options.tweak)(&mut config);
    let application = mirai_prediction::startup::build_with(&config)
        .await
        .expect("prediction builds");
    let context = application.context.clone();
    let app = application.app;
    let grpc_url = format!("http://{}", app.grpc_addr());
    let admin_url = format!("http://{}", app.admin_addr());
    let pool = app.pool.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            app.run_until_stopped(stop).await.expect("prediction runs");
        }
    });
    let client = PredictionServiceClient::new(mirai_platform::testing::connect(grpc_url).await);
    TestApp {
        client,
        admin_url,
        pool,
        context,
        stock,
        stop,
        _task: task,
        _db: db,
    }
}

impl TestApp {
    /// A forecast of `symbol` requested by the user `user_id` (empty: anonymously).
    pub async fn predict(
        &self,
        symbol: &str,
        user_id: &str,
    ) -> Result<pb::Forecast, tonic::Status> {
        let message = pb::PredictRequest {
            symbol: symbol.into(),
            user_id: user_id.into(),
            ..Default::default()
        };
        let request = if user_id.is_empty() {
            tonic::Request::new(message)
        } else {
            as_user(message, user_id, "user")
        };
        self.client
            .clone()
            .predict(request)
            .await
            .map(|r| r.into_inner().forecast.expect("a forecast"))
    }

    pub async fn version(&self, version: &str) -> pb::ModelVersion {
        self.client
            .clone()
            .get_model_version(pb::GetModelVersionRequest {
                model: Some(model(version)),
            })
            .await
            .unwrap()
            .into_inner()
            .version
            .unwrap()
    }

    pub async fn metrics_text(&self) -> String {
        reqwest_get(&format!("{}/metrics", self.admin_url)).await
    }

    /// Event types in this service's outbox, oldest first.
    pub async fn outbox_types(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn reqwest_get(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// A copy of the checkout's models folder with only `versions` registered (the first is the
/// champion), in a temporary directory.
pub fn models_copy(versions: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let source = Path::new(mirai_prediction::config::DEFAULT_MODELS_DIR);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(source.join("registry.json")).unwrap()).unwrap();
    let mut registry = registry;
    let models: Vec<serde_json::Value> = registry["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| versions.contains(&m["version"].as_str().unwrap()))
        .cloned()
        .collect();
    for version in versions {
        let from = source.join("spx-lstm").join(version);
        let to = root.join("spx-lstm").join(version);
        std::fs::create_dir_all(&to).unwrap();
        for file in ["model.onnx", "card.json", "golden.json"] {
            std::fs::copy(from.join(file), to.join(file)).unwrap();
        }
    }
    registry["models"] = serde_json::Value::Array(models);
    registry["champion"] = serde_json::json!({"name": "spx-lstm", "version": versions[0]});
    registry["challengers"] = serde_json::Value::Array(
        versions[1..]
            .iter()
            .map(|v| serde_json::json!({"name": "spx-lstm", "version": v}))
            .collect(),
    );
    write_json(&root.join("registry.json"), &registry);
    (dir, root)
}

/// Writes JSON atomically (temp file + rename), as a deploy would.
pub fn write_json(path: &Path, value: &serde_json::Value) {
    write_atomically(path, &serde_json::to_vec_pretty(value).unwrap());
}

pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
