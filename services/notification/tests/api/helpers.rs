//! Shared test plumbing: the real service on port 0 with a fresh database and its own Pub/Sub
//! names, callers with a principal, events published as their real publishers would, the
//! Python tools venv, and small local third-party servers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use google_cloud_pubsub::model::Message;
use mirai_notification::config::Config;
use mirai_notification::context::Shared;
use mirai_platform::auth::Role;
use mirai_platform::events::Event;
use mirai_platform::testing::TestDatabase;
use mirai_proto::notification::v1 as pb;
use mirai_proto::notification::v1::notification_service_client::NotificationServiceClient;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub type Client = NotificationServiceClient<mirai_platform::testing::TestChannel>;

pub struct TestApp {
    pub client: Client,
    pub pool: sqlx::PgPool,
    pub config: Config,
    pub context: Shared,
    pub stop: CancellationToken,
    pub db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Test settings: private webhook targets allowed (the receivers are on loopback), quick
/// retries, a quick saga and sweeps.
pub fn test_config(db: &TestDatabase) -> Config {
    let mut config = Config::for_tests(db.url());
    config.webhooks.allow_private_targets = true;
    config.webhooks.timeout = Duration::from_secs(2);
    config.deliveries.retry_schedule = vec![
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(200),
    ];
    config.deliveries.poll_interval = Duration::from_millis(100);
    config.saga.activation_timeout = Duration::from_millis(500);
    config.saga.sweep_interval = Duration::from_millis(200);
    config
}

/// The service with `configure` applied to [`test_config`].
pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::create("notification").await;
    let mut config = test_config(&db);
    configure(&mut config);
    start(db, config).await
}

pub async fn start(db: TestDatabase, config: Config) -> TestApp {
    let (client, pool, context, stop) = replica(&config).await;
    TestApp {
        client,
        pool,
        config,
        context,
        stop,
        db,
    }
}

/// One more replica of the service on `config`'s database (a restart, a rollout): its client,
/// pool and context, and the token that stops it.
pub async fn replica(config: &Config) -> (Client, sqlx::PgPool, Shared, CancellationToken) {
    let app = mirai_notification::startup::build_with(config)
        .await
        .expect("the service starts");
    let pool = app.service.pool.clone();
    let addr = app.grpc_addr();
    let context = app.context.clone();
    let stop = CancellationToken::new();
    tokio::spawn(app.service.run_until_stopped(stop.clone()));
    let client = Client::new(mirai_platform::testing::connect(format!("http://{addr}")).await);
    (client, pool, context, stop)
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

/// A request carrying `user`'s principal with `roles`, as the gateway forwards it.
pub fn as_user<T>(user: Uuid, roles: &[Role], message: T) -> tonic::Request<T> {
    mirai_platform::testing::request_as(user, roles, message)
}

/// A request of `owner` with the plain user role.
pub fn user<T>(owner: Uuid, message: T) -> tonic::Request<T> {
    as_user(owner, &[Role::User], message)
}

impl TestApp {
    /// Publishes `event` as `source` would (`ce-source //mirai/<source>`), returning the
    /// message so a test can publish the very same one again (same `ce-id`).
    pub async fn publish<E: Event>(
        &self,
        source: &str,
        event: &E,
        again: Option<Message>,
    ) -> Message {
        mirai_platform::testing::publish(&self.config.service.pubsub, source, event, again).await
    }

    /// A user as the read model knows them (what `user.registered` stores), whose account
    /// address is already verified (`verification` tests register users through the event).
    pub async fn add_user(&self, email: &str, time_zone: &str, roles: &[&str]) -> Uuid {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO users (user_id, email, display_name, time_zone, roles)
             VALUES ($1, $2, 'Test', $3, $4)",
        )
        .bind(id)
        .bind(email)
        .bind(time_zone)
        .bind(roles.iter().map(|r| r.to_string()).collect::<Vec<_>>())
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO email_addresses (user_id, address, verified_at) VALUES ($1, lower($2), now())",
        )
        .bind(id)
        .bind(email)
        .execute(&self.pool)
        .await
        .unwrap();
        id
    }

    /// Creates an alert for `owner`.
    pub async fn create_alert(&mut self, owner: Uuid, alert: pb::Alert) -> pb::Alert {
        self.client
            .create_alert(user(
                owner,
                pb::CreateAlertRequest {
                    user_id: owner.to_string(),
                    alert: Some(alert),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .alert
            .unwrap()
    }

    pub async fn get_alert(&mut self, owner: Uuid, alert_id: &str) -> pb::Alert {
        self.client
            .get_alert(user(
                owner,
                pb::GetAlertRequest {
                    user_id: owner.to_string(),
                    alert_id: alert_id.to_owned(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .alert
            .unwrap()
    }

    /// Answers the saga as stock-data does, and waits for the alert to be ACTIVE.
    pub async fn confirm(&mut self, owner: Uuid, alert: &pb::Alert) -> pb::Alert {
        self.publish(
            "stock-data",
            &mirai_proto::events::v1::SymbolTrackingConfirmed {
                alert_id: alert.alert_id.clone(),
                symbol: alert.symbol.clone(),
                reference: format!("alert:{}", alert.alert_id),
                reference_count: 1,
            },
            None,
        )
        .await;
        let id = alert.alert_id.clone();
        let mut client = self.clone_client();
        eventually("the alert to become ACTIVE", || {
            let (mut client, id) = (client.clone(), id.clone());
            async move {
                let a = client
                    .get_alert(user(
                        owner,
                        pb::GetAlertRequest {
                            user_id: owner.to_string(),
                            alert_id: id,
                        },
                    ))
                    .await
                    .ok()?
                    .into_inner()
                    .alert?;
                (a.status == pb::AlertStatus::Active as i32).then_some(a)
            }
        })
        .await;
        // The evaluator's index follows within a moment; wait for it so events are not skipped.
        let symbol = alert.symbol.clone();
        let ctx = self.context.clone();
        eventually("the index to know the alert", || {
            let (ctx, symbol) = (ctx.clone(), symbol.clone());
            async move { ctx.index.watches(&symbol).then_some(()) }
        })
        .await;
        self.get_alert_with(&mut client, owner, &alert.alert_id)
            .await
    }

    fn clone_client(&self) -> Client {
        self.client.clone()
    }

    async fn get_alert_with(&self, client: &mut Client, owner: Uuid, id: &str) -> pb::Alert {
        client
            .get_alert(user(
                owner,
                pb::GetAlertRequest {
                    user_id: owner.to_string(),
                    alert_id: id.to_owned(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .alert
            .unwrap()
    }

    /// Publishes a price update of `symbol` at `price`, traded now.
    pub async fn price(&self, symbol: &str, price: f64) -> Message {
        self.publish("stock-data", &price_event(symbol, price), None)
            .await
    }

    /// Publishes a price update traded `minutes` from now (cool-downs and bars follow the
    /// trade time, so a test can let them pass).
    pub async fn price_in(&self, symbol: &str, price: f64, minutes: i64) -> Message {
        let mut event = price_event(symbol, price);
        event.price_time = Some(mirai_platform::wire::timestamp(
            chrono::Utc::now() + chrono::Duration::minutes(minutes),
        ));
        self.publish("stock-data", &event, None).await
    }

    /// Notifications of `owner` stored for an alert (any category), oldest first.
    pub async fn trigger_count(&self, alert_id: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM notifications WHERE alert_id = $1::uuid AND category IN (1, 2)",
        )
        .bind(alert_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Payloads of one event type in the outbox, in order.
    pub async fn outbox<E: Event>(&self) -> Vec<E> {
        mirai_platform::testing::outbox(&self.pool).await
    }

    /// Inbox rows of a handler (events it has processed).
    pub async fn processed(&self, handler: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE handler = $1")
            .bind(handler)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// (channel, status, attempts) of every delivery of a notification-producing alert.
    pub async fn deliveries_of(&self, owner: Uuid) -> Vec<(i16, String, i32, String)> {
        sqlx::query_as(
            "SELECT channel, status, attempts, target FROM deliveries WHERE user_id = $1
             ORDER BY delivery_id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

pub fn price_event(symbol: &str, price: f64) -> mirai_proto::events::v1::PriceUpdated {
    mirai_proto::events::v1::PriceUpdated {
        symbol: symbol.into(),
        price,
        price_time: Some(mirai_platform::wire::timestamp(chrono::Utc::now())),
        interval_high: price,
        interval_low: price,
        coalesced: 1,
        source: "replay".into(),
        ..Default::default()
    }
}

pub fn level(kind: fn(pb::PriceLevel) -> pb::condition::Kind, price: f64) -> pb::Condition {
    pb::Condition {
        kind: Some(kind(pb::PriceLevel { price })),
        hysteresis_percent: 0.0,
    }
}

/// An alert on `symbol` with `condition`, delivered on `channels`.
pub fn alert(symbol: &str, condition: pb::Condition, channels: &[pb::Channel]) -> pb::Alert {
    pb::Alert {
        symbol: symbol.into(),
        condition: Some(condition),
        frequency: pb::Frequency::EveryTime.into(),
        cooldown: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        channels: channels.iter().map(|c| *c as i32).collect(),
        ..Default::default()
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most 30 s.
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(30), check).await
}

/// [`eventually`] with another limit.
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    mirai_platform::testing::eventually(what, limit, check).await
}

// === Python tools ===

pub fn py_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

/// The python of the tools venv (created on first use by `tests/py/venv`). Fails the test
/// with the reason when the tools cannot be had: these tests never skip.
pub fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let out = std::process::Command::new(py_dir().join("venv"))
                .output()
                .map_err(|e| format!("cannot run tests/py/venv: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "tests/py/venv failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .clone()
        .unwrap_or_else(|why| {
            panic!("the Python test tools (aiosmtpd, google-cloud-pubsub, jsonschema, standardwebhooks) are required: {why}")
        })
}

// === A local webhook receiver ===

/// One received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// An HTTP server on loopback that records requests and answers with the queued statuses
/// (then 200).
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
    statuses: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    pub async fn start(statuses: &[u16]) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let queued = Arc::new(Mutex::new(
            statuses.iter().rev().copied().collect::<Vec<_>>(),
        ));
        let (r, q) = (received.clone(), queued.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (r, q) = (r.clone(), q.clone());
                async move {
                    let headers = headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
                        .collect();
                    r.lock().unwrap().push(Received { headers, body });
                    let status = q.lock().unwrap().pop().unwrap_or(200);
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            received,
            statuses: queued,
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Makes every following answer `status`.
    pub fn answer_always(&self, status: u16) {
        *self.statuses.lock().unwrap() = vec![status; 10_000];
    }
}

// === A huge error body ===

/// The size of [`HugeBody`]s in the tests: far more than any reader should take.
pub const HUGE_BODY: usize = 50 * 1024 * 1024;

/// How a huge body starts.
pub const HUGE_BODY_START: &str = "upstream exploded: ";

/// A `size`-byte error body streamed in 64 KiB chunks (a hostile or broken server's answer),
/// counting what was handed to the connection and whether it got to the end.
#[derive(Clone)]
pub struct HugeBody {
    size: usize,
    produced: Arc<std::sync::atomic::AtomicUsize>,
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl HugeBody {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            produced: Arc::default(),
            finished: Arc::default(),
        }
    }

    /// A fresh stream of the body (one per answer).
    pub fn body(&self) -> axum::body::Body {
        use futures::StreamExt as _;
        use std::sync::atomic::Ordering;
        const CHUNK: usize = 64 * 1024;
        let (size, p, f) = (self.size, self.produced.clone(), self.finished.clone());
        let chunks = futures::stream::iter(0..size.div_ceil(CHUNK)).map(move |i| {
            let len = CHUNK.min(size - i * CHUNK);
            let mut chunk = vec![b'x'; len];
            if i == 0 {
                chunk[..HUGE_BODY_START.len()].copy_from_slice(HUGE_BODY_START.as_bytes());
            }
            if p.fetch_add(len, Ordering::SeqCst) + len == size {
                f.store(true, Ordering::SeqCst);
            }
            Ok::<_, std::io::Error>(axum::body::Bytes::from(chunk))
        });
        axum::body::Body::from_stream(chunks)
    }

    /// The reader stopped early: the body was never handed over whole. (The count includes
    /// what the kernel buffered for a reader that had already gone.)
    pub fn assert_not_read_whole(&self) {
        use std::sync::atomic::Ordering;
        let produced = self.produced.load(Ordering::SeqCst);
        assert!(
            !self.finished.load(Ordering::SeqCst),
            "the whole {}-byte body was read ({produced} bytes)",
            self.size
        );
        assert!(produced < 16 * 1024 * 1024, "{produced} bytes produced");
    }
}
