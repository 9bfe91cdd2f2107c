//! Helpers for integration tests (feature `testing`).
//!
//! Tests run against the real PostgreSQL server named by `MIRAI_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test gets a fresh database that is
//! dropped when the [`TestDatabase`] goes out of scope, so tests run in parallel.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions as _, Connection as _};

/// The server URL tests create their databases on.
pub fn server_url() -> String {
    std::env::var("MIRAI_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A freshly created, empty database, dropped (forcibly) on drop.
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates `test_<prefix>_<uuid>` on the test server.
    pub async fn create(prefix: &str) -> Self {
        let name = format!("test_{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&server_url())
            .await
            .expect("connect to MIRAI_TEST_DATABASE_URL (is PostgreSQL running?)");
        sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let options: PgConnectOptions = server_url().parse().expect("valid server URL");
        let url = options.database(&name).to_url_lossy().to_string();
        Self { name, url }
    }

    /// The URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside or outside a runtime; use a private one on a plain thread.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&server_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A currently free loopback port (bound then released; a tiny race window is acceptable in tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Polls `url` until it answers `status`, or panics after `timeout`.
pub async fn wait_for_status(url: &str, status: u16, timeout: Duration) {
    let client = reqwest::Client::new();
    let give_up = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().as_u16() == status
        {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "{url} did not answer {status} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The HTTP status `url` answers now (`None` when the connection fails).
pub async fn http_status(url: &str) -> Option<u16> {
    reqwest::get(url).await.ok().map(|r| r.status().as_u16())
}

/// The `/metrics` text of the admin port at `admin`.
pub async fn metrics_text(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Telemetry for a test that asserts on spans: every finished span of this process also goes to
/// the returned in-memory exporter (JSON logs at `info`, no OTLP). Keep the guard alive.
pub fn capture_spans(
    service_name: &str,
) -> (
    opentelemetry_sdk::trace::InMemorySpanExporter,
    crate::telemetry::Guard,
) {
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let config = crate::config::TelemetryConfig {
        service_name: service_name.to_owned(),
        log_filter: "info".into(),
        log_format: crate::config::LogFormat::Json,
        otlp_endpoint: None,
    };
    let guard = crate::telemetry::init_with_exporter(&config, exporter.clone())
        .expect("telemetry for the test");
    (exporter, guard)
}

/// The overall gRPC health status of the server at `addr`.
pub async fn grpc_health(
    addr: SocketAddr,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    tonic_health::pb::health_check_response::ServingStatus::try_from(response.into_inner().status)
        .ok()
}

/// A child process that is killed if the test forgets it.
pub struct ChildProcess {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

/// Drains a pipe on a thread so a chatty child never blocks on a full pipe.
fn drain(
    pipe: Option<impl std::io::Read + Send + 'static>,
) -> Option<std::thread::JoinHandle<String>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    })
}

impl ChildProcess {
    /// Starts `program` with exactly `env` (the inherited environment is cleared, so tests are
    /// hermetic), capturing stdout and stderr.
    pub fn spawn<'a>(program: &str, env: impl IntoIterator<Item = (&'a str, String)>) -> Self {
        let mut command = Command::new(program);
        command.env_clear().envs(env);
        Self::from_command(command)
    }

    /// Starts a prepared command (inheriting whatever environment it was given), capturing
    /// stdout and stderr.
    pub fn from_command(mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"));
        nix::sys::signal::kill(pid, signal).expect("send signal");
    }

    /// Waits for exit up to `timeout`; returns the status and everything printed, or (after
    /// killing the process) what it printed before it was killed, so a failed wait shows why.
    pub fn wait_timeout(
        mut self,
        timeout: Duration,
    ) -> Result<(ExitStatus, String, String), StillRunning> {
        let give_up = Instant::now() + timeout;
        loop {
            match self.child.try_wait().expect("poll child") {
                Some(status) => {
                    let (stdout, stderr) = self.take_output();
                    return Ok((status, stdout, stderr));
                }
                None if Instant::now() >= give_up => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    let (stdout, stderr) = self.take_output();
                    return Err(StillRunning { stdout, stderr });
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn take_output(&mut self) -> (String, String) {
        let join = |handle: Option<std::thread::JoinHandle<String>>| {
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

/// A child that had not exited when the wait ended; it has been killed. Its `Debug` form is
/// the output, so `.expect(..)` on a wait prints what the process was doing.
pub struct StillRunning {
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for StillRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "still running, killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Behaviour every service binary must show; each service's tests call these with its binary.
pub mod conformance {
    use std::time::Duration;

    use super::{ChildProcess, free_port, grpc_health, http_status, wait_for_status};
    use crate::bootstrap::EXIT_CONFIG;

    /// Missing or malformed configuration: exit status 78 and a message naming the variable.
    pub fn config_errors_name_the_variable(
        binary: &str,
        valid_env: &[(&str, String)],
        required: &str,
    ) {
        let without: Vec<(&str, String)> = valid_env
            .iter()
            .filter(|(k, _)| *k != required)
            .cloned()
            .collect();
        exits_naming(binary, without, required);

        let mut malformed = valid_env.to_vec();
        malformed.push(("MIRAI_ADMIN_ADDR", "not-an-address".to_owned()));
        exits_naming(binary, malformed, "MIRAI_ADMIN_ADDR");

        // Fault injection never starts in production.
        let mut production = valid_env.to_vec();
        if !production.iter().any(|(k, _)| *k == "GOOGLE_CLOUD_PROJECT") {
            production.push(("GOOGLE_CLOUD_PROJECT", "mirai-test".to_owned()));
        }
        production.push(("MIRAI_PROFILE", "production".to_owned()));
        production.push(("MIRAI_FAULTS", "*=hang".to_owned()));
        exits_naming(binary, production, "MIRAI_FAULTS");
    }

    /// Starts `binary` with `env` and asserts it exits with the configuration status, naming
    /// `variable`.
    fn exits_naming(binary: &str, env: Vec<(&str, String)>, variable: &str) {
        let (status, _, stderr) = ChildProcess::spawn(binary, env)
            .wait_timeout(Duration::from_secs(20))
            .expect("exits promptly");
        assert_eq!(
            status.code(),
            Some(i32::from(EXIT_CONFIG)),
            "stderr: {stderr}"
        );
        assert!(
            stderr.contains(variable),
            "stderr should name {variable}: {stderr}"
        );
    }

    /// `--migrate-only` applies the migrations and exits 0 (binding nothing), `--provision-only`
    /// creates the Pub/Sub resources and exits 0, anything else is a usage error (64).
    pub async fn one_shot_modes(binary: &str, env: &[(&str, String)], database_url: &str) {
        let run = |arg: &str| {
            let mut command = std::process::Command::new(binary);
            command
                .arg(arg)
                .env_clear()
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
            ChildProcess::from_command(command)
                .wait_timeout(Duration::from_secs(60))
                .expect("a one-shot mode exits promptly")
        };
        let (status, _, stderr) = run("--migrate-only");
        assert!(status.success(), "--migrate-only: {stderr}");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(database_url)
            .await
            .expect("connect");
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .expect("migrations table");
        assert!(applied >= 2, "platform and service migrations applied");
        let (status, _, stderr) = run("--provision-only");
        assert!(status.success(), "--provision-only: {stderr}");
        let (status, _, stderr) = run("--serve-forever");
        assert_eq!(
            status.code(),
            Some(i32::from(crate::bootstrap::EXIT_USAGE)),
            "{stderr}"
        );
        assert!(
            stderr.contains("--migrate-only"),
            "usage is printed: {stderr}"
        );
    }

    /// The status of a unary call to `path` on `addr` with an empty message (`()` both ways),
    /// carrying `metadata`.
    async fn call_status(
        addr: std::net::SocketAddr,
        path: &'static str,
        metadata: &[(&'static str, String)],
    ) -> tonic::Code {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("a valid URL")
            .connect()
            .await
            .expect("connect");
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.expect("ready");
        let mut request = tonic::Request::new(());
        for (key, value) in metadata {
            request
                .metadata_mut()
                .insert(*key, value.parse().expect("ASCII"));
        }
        match client
            .unary(
                request,
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
        {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    }

    const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    const HEALTH: &str = "/grpc.health.v1.Health/Check";
    /// Any other method: the identity check comes before routing.
    const ANY_METHOD: &str = "/mirai.conformance.v1.Probe/Call";

    /// With `MIRAI_PROFILE=production` (and the test keys) the binary serves no reflection by
    /// default; in development it does. In both, health answers without a token, and any other
    /// call without a valid token — or with only the old `x-mirai-user-id`/`x-mirai-roles`
    /// headers — is `UNAUTHENTICATED`.
    pub async fn production_hides_reflection_and_refuses_unsigned_calls(
        binary: &str,
        env: &[(&str, String)],
    ) {
        for production in [true, false] {
            let (port, admin_port) = (free_port(), free_port());
            let mut full = env.to_vec();
            full.extend(super::identity_env());
            full.extend([
                ("MIRAI_GRPC_ADDR", format!("127.0.0.1:{port}")),
                ("MIRAI_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
                ("MIRAI_SHUTDOWN_DRAIN_DELAY", "0s".to_owned()),
            ]);
            if production {
                full.push(("MIRAI_PROFILE", "production".to_owned()));
            }
            let _child = ChildProcess::spawn(binary, full);
            let ready = format!("http://127.0.0.1:{admin_port}/readyz");
            wait_for_status(&ready, 200, Duration::from_secs(60)).await;
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            // In development the reflection service answers: an empty request (no
            // `message_request`) is its INVALID_ARGUMENT. In production there is none.
            let expected = if production {
                tonic::Code::Unimplemented
            } else {
                tonic::Code::InvalidArgument
            };
            assert_eq!(
                call_status(addr, REFLECTION, &[]).await,
                expected,
                "reflection, production: {production}"
            );
            assert_eq!(call_status(addr, HEALTH, &[]).await, tonic::Code::Ok);
            let forged = [
                (
                    "x-mirai-user-id",
                    "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".to_owned(),
                ),
                ("x-mirai-roles", "admin".to_owned()),
            ];
            assert_eq!(
                call_status(addr, ANY_METHOD, &forged).await,
                tonic::Code::Unauthenticated
            );
            // A token for another audience is refused; one addressed to this binary (its file
            // name is its service name) passes the check and reaches the router.
            let name = std::path::Path::new(binary)
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a binary name");
            for (audience, code) in [
                (
                    crate::grpc::identity::TEST_AUDIENCE,
                    tonic::Code::Unauthenticated,
                ),
                (name, tonic::Code::Unimplemented),
            ] {
                let token = super::test_gateway().sign(&[audience], None);
                assert_eq!(
                    call_status(
                        addr,
                        ANY_METHOD,
                        &[(crate::grpc::identity::IDENTITY_HEADER, token)]
                    )
                    .await,
                    code,
                    "a token for {audience}"
                );
            }
        }
    }

    /// Starts `binary`, waits until ready, sends SIGTERM, and checks the shutdown sequence:
    /// `/readyz` turns 503 while gRPC still answers (drain delay), then a clean exit within the
    /// grace period. Also checks that every stdout line is a JSON log object.
    ///
    /// `env` is the binary's own configuration; listener addresses and shutdown timings are
    /// added here. Returns the process's stdout for further checks.
    pub async fn sigterm_drains_and_exits(
        binary: &str,
        env: &[(&str, String)],
        grpc: bool,
    ) -> String {
        let (main_port, admin_port) = (free_port(), free_port());
        let main_var = if grpc {
            "MIRAI_GRPC_ADDR"
        } else {
            "MIRAI_HTTP_ADDR"
        };
        let mut full = env.to_vec();
        full.extend([
            (main_var, format!("127.0.0.1:{main_port}")),
            ("MIRAI_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
            ("MIRAI_SHUTDOWN_DRAIN_DELAY", "1500ms".to_owned()),
            ("MIRAI_SHUTDOWN_GRACE", "5s".to_owned()),
            ("MIRAI_LOG_FORMAT", "json".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]);
        let child = ChildProcess::spawn(binary, full);
        let readyz = format!("http://127.0.0.1:{admin_port}/readyz");
        wait_for_status(&readyz, 200, Duration::from_secs(60)).await;
        assert_eq!(
            http_status(&format!("http://127.0.0.1:{admin_port}/healthz")).await,
            Some(200)
        );
        let main_addr = std::net::SocketAddr::from(([127, 0, 0, 1], main_port));
        if grpc {
            assert_eq!(
                grpc_health(main_addr).await,
                Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
            );
        }

        child.terminate();
        let started = std::time::Instant::now();
        wait_for_status(&readyz, 503, Duration::from_secs(1)).await;
        // Still inside the drain delay: the main listener keeps answering.
        assert!(
            tokio::net::TcpStream::connect(main_addr).await.is_ok(),
            "listener must stay open during the drain delay"
        );
        if grpc {
            assert_eq!(
                grpc_health(main_addr).await,
                Some(tonic_health::pb::health_check_response::ServingStatus::NotServing)
            );
        }
        let (status, stdout, stderr) =
            tokio::task::spawn_blocking(move || child.wait_timeout(Duration::from_secs(20)))
                .await
                .expect("join")
                .expect("exits within the grace period");
        assert!(status.success(), "exit {status:?}; stderr: {stderr}");
        assert!(
            started.elapsed() >= Duration::from_millis(1500),
            "drain delay honoured"
        );
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            assert!(
                value.get("level").is_some() && value.get("message").is_some(),
                "{line}"
            );
        }
        stdout
    }
}

/// The payloads of event `E` in a service's transactional outbox, oldest first, decoded.
pub async fn outbox<E: crate::events::Event>(pool: &sqlx::PgPool) -> Vec<E> {
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar!(
        "SELECT payload FROM outbox WHERE event_type = $1 ORDER BY id",
        E::TYPE,
    )
    .fetch_all(pool)
    .await
    .expect("read the outbox");
    payloads
        .iter()
        .map(|p| E::decode(p.as_slice()).expect("an outbox payload decodes"))
        .collect()
}

/// Polls `check` every 50 ms until it returns `Some`, or panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let give_up = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < give_up,
            "timed out waiting for {what} ({limit:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The gateway's signer with the test key ([`crate::grpc::identity::test_signing_key`]), which
/// every test configuration trusts ([`crate::config::ServiceConfig::for_tests`]).
fn test_gateway() -> &'static crate::grpc::identity::Signer {
    static SIGNER: std::sync::OnceLock<crate::grpc::identity::Signer> = std::sync::OnceLock::new();
    SIGNER.get_or_init(|| {
        crate::grpc::identity::Signer::new(
            "mirai-gateway",
            &crate::grpc::identity::test_signing_key(),
        )
    })
}

/// Signs `request` as the gateway would, acting for `principal` (`None`: an anonymous call),
/// addressed to any test service ([`crate::grpc::identity::TEST_AUDIENCE`]).
pub fn sign_as<T>(request: &mut tonic::Request<T>, principal: Option<&crate::auth::Principal>) {
    let token = test_gateway().sign(&[crate::grpc::identity::TEST_AUDIENCE], principal);
    request.metadata_mut().insert(
        crate::grpc::identity::IDENTITY_HEADER,
        token.parse().expect("a JWT is ASCII"),
    );
}

/// A request carrying the principal `user_id` with `roles`, as the gateway forwards it: with a
/// real identity token signed by the test key.
pub fn request_as<T>(
    user_id: impl ToString,
    roles: &[crate::auth::Role],
    message: T,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let principal = crate::auth::Principal {
        user_id: user_id.to_string(),
        roles: roles.iter().copied().collect(),
        api_key_id: None,
    };
    sign_as(&mut request, Some(&principal));
    request
}

/// Signs every call that carries no identity token yet as an anonymous call through the
/// gateway (the test clients' interceptor; [`request_as`] calls keep their own token).
#[derive(Clone, Copy, Debug, Default)]
pub struct AsGateway;

impl tonic::service::Interceptor for AsGateway {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        Ok(sign_unless_signed(request, None))
    }
}

/// `request` signed with [`sign_as`] for `principal`, unless it carries a token already.
fn sign_unless_signed(
    mut request: tonic::Request<()>,
    principal: Option<&crate::auth::Principal>,
) -> tonic::Request<()> {
    if !request
        .metadata()
        .contains_key(crate::grpc::identity::IDENTITY_HEADER)
    {
        sign_as(&mut request, principal);
    }
    request
}

/// Signs every call that carries no identity token yet as the gateway acting for an admin
/// (admin RPCs in tests and benches; [`request_as`] calls keep their own token).
#[derive(Clone, Copy, Debug, Default)]
pub struct AsAdmin;

impl tonic::service::Interceptor for AsAdmin {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let admin = crate::auth::Principal {
            user_id: "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
            roles: [crate::auth::Role::User, crate::auth::Role::Admin].into(),
            api_key_id: None,
        };
        Ok(sign_unless_signed(request, Some(&admin)))
    }
}

/// A channel whose calls carry test identity tokens ([`AsGateway`]).
pub type TestChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, AsGateway>;

/// Connects to the gRPC server at `url` (`http://host:port`) with [`AsGateway`].
pub async fn connect(url: impl Into<String>) -> TestChannel {
    let channel = tonic::transport::Endpoint::from_shared(url.into())
        .expect("a valid URL")
        .connect()
        .await
        .expect("connect to the test server");
    tonic::service::interceptor::InterceptedService::new(channel, AsGateway)
}

/// `MIRAI_INTERNAL_SIGNING_KEY` and `MIRAI_INTERNAL_TRUSTED_KEYS` for a binary under test: the
/// test key, trusted for every MiraiKakaku process (files written once, atomically, under the
/// temporary directory; their content never changes).
pub fn identity_env() -> Vec<(&'static str, String)> {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    static PATHS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (key, trusted) = PATHS.get_or_init(|| {
        let dir = std::env::temp_dir().join("mirai-test-identity");
        std::fs::create_dir_all(&dir).expect("create the test identity folder");
        let write = |name: &str, content: &[u8]| {
            let path = dir.join(name);
            let partial = dir.join(format!("{name}.{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&partial, content).expect("write a test identity file");
            std::fs::rename(&partial, &path).expect("move a test identity file into place");
            path.to_string_lossy().into_owned()
        };
        let signing = crate::grpc::identity::test_signing_key();
        let pem = signing
            .to_pkcs8_pem(Default::default())
            .expect("an Ed25519 key encodes as PKCS#8");
        let issuers = [
            "mirai-gateway",
            "mirai-user",
            "mirai-stock-data",
            "mirai-prediction",
            "mirai-analytics",
            "mirai-notification",
        ];
        (
            write("signing.pem", pem.as_bytes()),
            write(
                "trusted.json",
                crate::grpc::identity::trusted_keys_json(&signing, &issuers).as_bytes(),
            ),
        )
    });
    vec![
        ("MIRAI_INTERNAL_SIGNING_KEY", key.clone()),
        ("MIRAI_INTERNAL_TRUSTED_KEYS", trusted.clone()),
    ]
}

/// Publishes `event` on its topic as the service `source` would (`ce-source //mirai/<source>`,
/// ordered by its subject) and returns the message, so a test can publish the very same one
/// again (`again`: same `ce-id`, a redelivery).
pub async fn publish<E: crate::events::Event>(
    config: &crate::events::pubsub::PubSubConfig,
    source: &str,
    event: &E,
    again: Option<google_cloud_pubsub::model::Message>,
) -> google_cloud_pubsub::model::Message {
    let base = crate::events::pubsub::publisher(config).await.unwrap();
    let publisher = base.publisher(config.topic_path(E::TOPIC)).build();
    let message = again.unwrap_or_else(|| {
        let envelope = crate::events::Envelope::new(source, event, None);
        google_cloud_pubsub::model::Message::new()
            .set_data(prost::Message::encode_to_vec(event))
            .set_attributes(envelope.to_attributes())
            .set_ordering_key(event.subject())
    });
    publisher.publish(message.clone()).await.unwrap();
    message
}

/// The variables that point a service binary at `config`'s emulator and prefix.
pub fn pubsub_env(config: &crate::events::pubsub::PubSubConfig) -> Vec<(&'static str, String)> {
    vec![
        (
            "PUBSUB_EMULATOR_HOST",
            config.emulator_host.clone().unwrap_or_default(),
        ),
        ("GOOGLE_CLOUD_PROJECT", config.project.clone()),
        ("MIRAI_PUBSUB_PREFIX", config.prefix.clone()),
    ]
}

/// The integration tests every gRPC service binary must pass, as one macro so the five
/// services share a single definition:
/// `mirai_platform::service_conformance_tests!("mirai-user", mirai_user, "user");`
#[macro_export]
macro_rules! service_conformance_tests {
    ($binary:literal, $krate:ident, $db_prefix:literal) => {
        const BINARY: &str = env!(concat!("CARGO_BIN_EXE_", $binary));

        #[test]
        fn config_errors_name_the_variable() {
            let env = [("DATABASE_URL", "postgres://127.0.0.1/unused".to_owned())];
            $crate::testing::conformance::config_errors_name_the_variable(
                BINARY,
                &env,
                "DATABASE_URL",
            );
        }

        #[tokio::test]
        async fn migrations_apply_twice_and_the_service_starts() {
            let db = $crate::testing::TestDatabase::create($db_prefix).await;
            for _ in 0..2 {
                let config = $crate::config::ServiceConfig::for_tests($binary, db.url());
                let app = $krate::startup::build(&config)
                    .await
                    .expect("starts on a migrated database");
                app.pool.close().await;
            }
        }

        #[tokio::test]
        async fn one_shot_modes_migrate_or_provision_then_exit() {
            let db = $crate::testing::TestDatabase::create($db_prefix).await;
            let mut env =
                $crate::testing::pubsub_env(&$crate::events::pubsub::PubSubConfig::for_tests());
            env.push(("DATABASE_URL", db.url().to_owned()));
            $crate::testing::conformance::one_shot_modes(BINARY, &env, db.url()).await;
        }

        #[tokio::test]
        async fn production_hides_reflection_and_refuses_unsigned_calls() {
            let db = $crate::testing::TestDatabase::create($db_prefix).await;
            let mut env =
                $crate::testing::pubsub_env(&$crate::events::pubsub::PubSubConfig::for_tests());
            env.push(("DATABASE_URL", db.url().to_owned()));
            $crate::testing::conformance::production_hides_reflection_and_refuses_unsigned_calls(
                BINARY, &env,
            )
            .await;
        }

        #[tokio::test]
        async fn sigterm_drains_and_exits() {
            let db = $crate::testing::TestDatabase::create($db_prefix).await;
            let mut env =
                $crate::testing::pubsub_env(&$crate::events::pubsub::PubSubConfig::for_tests());
            env.push(("DATABASE_URL", db.url().to_owned()));
            $crate::testing::conformance::sigterm_drains_and_exits(BINARY, &env, true).await;
        }
    };
}
