//! Starting the five services in-process, each on port 0 with a fresh database.

use std::net::SocketAddr;
use std::time::Duration;

use mirai_platform::app::ServiceApp;
use mirai_platform::config::ServiceConfig;
use mirai_platform::events::pubsub::PubSubConfig;
use mirai_platform::grpc::client::Target;
use mirai_platform::grpc::fault::{FaultRules, Faults};
use mirai_platform::testing::TestDatabase;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One running service: its addresses and a token that stops it.
pub struct RunningService {
    pub name: &'static str,
    pub grpc_addr: SocketAddr,
    /// The service's fault-injection handle (injection is on, with no rules, in these tests).
    pub faults: Faults,
    pub pool: sqlx::PgPool,
    pub stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    db: Option<TestDatabase>,
}

impl RunningService {
    /// Stops the service and waits until it has drained (its database stays).
    pub async fn halt(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn start(name: &'static str, db: TestDatabase, app: ServiceApp) -> RunningService {
    let grpc_addr = app.grpc_addr();
    let faults = app
        .server
        .faults()
        .cloned()
        .expect("test services run with fault injection on");
    let pool = app.pool.clone();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            app.run_until_stopped(stop).await.expect("service runs");
        }
    });
    RunningService {
        name,
        grpc_addr,
        faults,
        pool,
        stop,
        task: Some(task),
        db: Some(db),
    }
}

/// All five services, in ARCHITECTURE.md order, sharing one set of topics on the emulator.
pub struct Platform {
    pub services: Vec<RunningService>,
    pubsub: PubSubConfig,
    /// The user service's signing keys (`current.pem`, `next.pem`), for forging tokens in tests.
    pub keys_dir: std::path::PathBuf,
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.keys_dir);
    }
}

impl Platform {
    pub async fn start() -> Self {
        let pubsub = PubSubConfig::for_tests();
        let mut services = Vec::new();
        macro_rules! service {
            ($name:literal, $build:expr) => {{
                let db = TestDatabase::create(
                    $name
                        .trim_start_matches("mirai-")
                        .replace('-', "_")
                        .as_str(),
                )
                .await;
                let mut config = ServiceConfig::for_tests($name, db.url());
                config.pubsub = pubsub.clone();
                config.fault_injection = Some(FaultRules::default());
                let app = $build(config).await.expect(concat!($name, " builds"));
                services.push(start($name, db, app).await);
            }};
        }
        let keys_dir =
            std::env::temp_dir().join(format!("mirai-test-keys-{}", uuid::Uuid::new_v4().simple()));
        let mut auth = mirai_user::config::AuthConfig::for_tests();
        auth.keys.dir = Some(keys_dir.clone());
        auth.keys.generate = true;
        // Short, so tests see key rotation reach the gateway within a second.
        auth.keys.jwks_max_age = Duration::from_secs(1);
        service!("mirai-user", async |config: ServiceConfig| {
            mirai_user::startup::build_with(&config, &auth).await
        });
        service!("mirai-stock-data", async |config: ServiceConfig| {
            mirai_stock_data::startup::build(&config).await
        });
        // Prediction forecasts from this stock-data's bars, with the checkout's models.
        let stock_data_url = format!("http://{}", services[1].grpc_addr);
        service!("mirai-prediction", async |config: ServiceConfig| {
            let mut config = mirai_prediction::config::Config::with_service(config);
            config.stock_data.target = Target::Static(vec![stock_data_url.clone()]);
            mirai_prediction::startup::build_with(&config)
                .await
                .map(|built| built.app)
        });
        // Analytics reads bars from this stock-data (backfills) and models from this prediction.
        let prediction_url = format!("http://{}", services[2].grpc_addr);
        service!("mirai-analytics", async |config: ServiceConfig| {
            let mut config = mirai_analytics::config::Config::with_service(config);
            config.stock_data.target = Target::Static(vec![stock_data_url]);
            config.prediction.target = Target::Static(vec![prediction_url]);
            mirai_analytics::startup::build_with(&config).await
        });
        service!("mirai-notification", async |config: ServiceConfig| {
            mirai_notification::startup::build(&config).await
        });
        Self {
            services,
            pubsub,
            keys_dir,
        }
    }

    /// Starts service `index` again after [`RunningService::halt`], on its database and its
    /// port (so the gateway's channel finds it), built by `build` from its test config.
    pub async fn restart<F, Fut, E>(&mut self, index: usize, build: F)
    where
        F: FnOnce(ServiceConfig) -> Fut,
        Fut: std::future::Future<Output = Result<ServiceApp, E>>,
        E: std::fmt::Debug,
    {
        let old = &mut self.services[index];
        old.halt().await;
        let db = old.db.take().expect("a service owns its database");
        let mut config = ServiceConfig::for_tests(old.name, db.url());
        config.pubsub = self.pubsub.clone();
        config.fault_injection = Some(FaultRules::default());
        config.grpc_addr = old.grpc_addr;
        let app = build(config).await.expect("service rebuilds");
        let name = old.name;
        self.services[index] = start(name, db, app).await;
    }

    /// A gateway configuration in front of these services, listening on free ports.
    pub fn gateway_config(&self) -> mirai_gateway::config::Config {
        let mut env = self.upstream_env();
        env.push(("MIRAI_HTTP_ADDR", "127.0.0.1:0".to_owned()));
        env.push(("MIRAI_ADMIN_ADDR", "127.0.0.1:0".to_owned()));
        mirai_gateway::config::Config::from_env(&mirai_platform::config::Env::from_pairs(env))
            .expect("valid config")
    }

    /// The gateway's upstream URL variables pointing at these services, and its signing key
    /// (the test key, which every test service trusts).
    pub fn upstream_env(&self) -> Vec<(&'static str, String)> {
        let vars = [
            "MIRAI_USER_URL",
            "MIRAI_STOCK_DATA_URL",
            "MIRAI_PREDICTION_URL",
            "MIRAI_ANALYTICS_URL",
            "MIRAI_NOTIFICATION_URL",
        ];
        vars.into_iter()
            .zip(&self.services)
            .map(|(var, service)| (var, format!("http://{}", service.grpc_addr)))
            .chain(mirai_platform::testing::identity_env())
            .collect()
    }
}

/// A gateway in front of a fresh platform.
pub struct Gateway {
    pub base: String,
    pub http: reqwest::Client,
    pub platform: Platform,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Gateway {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A gateway whose configuration `adjust` changes first.
    pub async fn start_with(adjust: impl FnOnce(&mut mirai_gateway::config::Config)) -> Self {
        let platform = Platform::start().await;
        Self::start_on(platform, adjust).await
    }

    /// A gateway in front of `platform`.
    pub async fn start_on(
        platform: Platform,
        adjust: impl FnOnce(&mut mirai_gateway::config::Config),
    ) -> Self {
        let mut config = platform.gateway_config();
        adjust(&mut config);
        let (base, stop, task) = serve(config).await;
        Self {
            base,
            http: reqwest::Client::new(),
            platform,
            stop,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST path` with a JSON body (and a bearer token when given): status, headers, body.
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request).await
    }

    /// `GET path` (with a bearer token when given).
    pub async fn get(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request).await
    }

    /// Registers `email` and logs in: (user id, access token, refresh token).
    pub async fn sign_up(&self, email: &str) -> (String, String, String) {
        let (status, _, user) = self
            .post(
                "/v1/auth/register",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(status, 201, "{user}");
        let (status, _, tokens) = self
            .post(
                "/v1/auth/login",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(status, 200, "{tokens}");
        (
            user["user_id"].as_str().unwrap().to_owned(),
            tokens["access_token"].as_str().unwrap().to_owned(),
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        )
    }

    /// An admin's access token (see [`admin_token`]).
    pub async fn admin_token(&self) -> String {
        admin_token(&self.platform, &self.base).await
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// Registers `credentials` through the gateway at `base`; returns the new account.
pub async fn register(http: &reqwest::Client, base: &str, credentials: &Value) -> Value {
    post_expecting(http, &format!("{base}/v1/auth/register"), credentials, 201).await
}

/// Logs `credentials` in through the gateway at `base`; returns the token pair.
pub async fn login(http: &reqwest::Client, base: &str, credentials: &Value) -> Value {
    post_expecting(http, &format!("{base}/v1/auth/login"), credentials, 200).await
}

async fn post_expecting(http: &reqwest::Client, url: &str, body: &Value, expected: u16) -> Value {
    let (status, _, value) = answer(http.post(url).json(body).send().await.unwrap()).await;
    assert_eq!(status, expected, "{value}");
    value
}

/// Registers an account through the gateway at `base`, makes it admin in the user database
/// directly (the first admin of a real deployment is bootstrapped the same way, see the user
/// README), logs in and returns its access token.
pub async fn admin_token(platform: &Platform, base: &str) -> String {
    let http = reqwest::Client::new();
    let email = format!("admin-{}@example.com", uuid::Uuid::new_v4().simple());
    let credentials = json!({ "email": email, "password": PASSWORD });
    let user = register(&http, base, &credentials).await;
    sqlx::query("UPDATE users SET roles = '{user,admin}' WHERE user_id = $1::uuid")
        .bind(user["user_id"].as_str().unwrap())
        .execute(&platform.services[0].pool)
        .await
        .unwrap();
    let tokens = login(&http, base, &credentials).await;
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// Starts a gateway with `config`: its base URL, stop token and task.
pub async fn serve(
    config: mirai_gateway::config::Config,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = mirai_gateway::startup::Application::build(config)
        .await
        .expect("gateway builds");
    route_coverage::record(app.metrics());
    let base = format!("http://{}", app.http_addr());
    let stop = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(stop.clone()));
    (base, stop, task)
}

/// Sends `request`: status, headers, JSON body (`Null` when none).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, reqwest::header::HeaderMap, Value) {
    answer(request.send().await.unwrap()).await
}

/// `PATCH path` with a JSON body and a bearer token.
pub async fn patch(
    gw: &Gateway,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    send(gw.http.patch(gw.url(path)).bearer_auth(token).json(&body)).await
}

pub async fn answer(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// Polls `probe` until it returns `want`, for at most 30 s.
pub async fn eventually<T: PartialEq + std::fmt::Debug, F: AsyncFn() -> T>(
    what: &str,
    want: T,
    probe: F,
) {
    eventually_within(what, want, Duration::from_secs(30), probe).await
}

/// Polls `probe` until it returns `want`, for at most `limit`.
pub async fn eventually_within<T: PartialEq + std::fmt::Debug, F: AsyncFn() -> T>(
    what: &str,
    want: T,
    limit: Duration,
    probe: F,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = probe().await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which routes the tests exercise: every in-process gateway a test starts is noted here, and
/// when the test's runtime shuts down the (method, route template) pairs it answered with a
/// success (2xx) are written to `target/tmp/route-coverage/<pid>-<n>.txt`.
/// `scripts/route-coverage` (a stage of `scripts/test`) compares their union with the OpenAPI
/// document and names every operation no test called successfully (a 401 from a sweep over
/// every route does not count).
pub mod route_coverage {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use mirai_platform::telemetry::Metrics;

    /// Writes the routes when dropped: by the runtime's shutdown at the end of the test, which
    /// drops every task still pending — after the test awaited all its requests.
    struct WriteOnDrop(Metrics);

    impl Drop for WriteOnDrop {
        fn drop(&mut self) {
            static GATEWAYS: AtomicUsize = AtomicUsize::new(0);
            let n = GATEWAYS.fetch_add(1, Ordering::Relaxed);
            let lines: String = routes(&self.0.encode())
                .into_iter()
                .map(|route| route + "\n")
                .collect();
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("route-coverage");
            let file = dir.join(format!("{}-{n}.txt", std::process::id()));
            let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(file, lines));
        }
    }

    pub fn record(metrics: Metrics) {
        let guard = WriteOnDrop(metrics);
        tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await
        });
    }

    /// `METHOD route` of every `mirai_http_server_requests_total` sample in `text` with a 2xx
    /// status and a count above zero.
    fn routes(text: &str) -> Vec<String> {
        let label = |line: &str, name: &str| -> Option<String> {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_owned())
        };
        text.lines()
            .filter(|line| line.starts_with("mirai_http_server_requests_total{"))
            .filter(|line| label(line, "status").is_some_and(|s| s.starts_with('2')))
            .filter(|line| !line.ends_with(" 0"))
            .filter_map(|line| {
                Some(format!(
                    "{} {}",
                    label(line, "method")?,
                    label(line, "route")?
                ))
            })
            .collect()
    }
}
