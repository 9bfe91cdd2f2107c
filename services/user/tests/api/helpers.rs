//! Starts the service in-process on a fresh database and talks to it over gRPC.

use mirai_platform::config::ServiceConfig;
use mirai_platform::testing::TestChannel;
use mirai_platform::testing::TestDatabase;
use mirai_proto::user::v1 as pb;
use mirai_proto::user::v1::user_service_client::UserServiceClient;
use mirai_user::config::AuthConfig;
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub client: UserServiceClient<TestChannel>,
    pub pool: sqlx::PgPool,
    stop: CancellationToken,
    pub db: Option<TestDatabase>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The service with test settings (cheap Argon2, ephemeral keys) on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_with(AuthConfig::for_tests()).await
}

pub async fn spawn_with(auth: AuthConfig) -> TestApp {
    let db = TestDatabase::create("user").await;
    let mut app = spawn_on(db.url(), auth).await;
    app.db = Some(db);
    app
}

/// The service on an existing database (e.g. to restart it with other settings).
pub async fn spawn_on(url: &str, auth: AuthConfig) -> TestApp {
    let config = ServiceConfig::for_tests("mirai-user", url);
    let app = mirai_user::startup::build_with(&config, &auth)
        .await
        .expect("service starts");
    let pool = app.pool.clone();
    let addr = app.grpc_addr();
    let stop = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    let client =
        UserServiceClient::new(mirai_platform::testing::connect(format!("http://{addr}")).await);
    TestApp {
        client,
        pool,
        stop,
        db: None,
    }
}

/// A request carrying the principal the gateway would pass (`roles` comma-separated).
pub fn as_user<T>(message: T, user_id: &str, roles: &str) -> tonic::Request<T> {
    let roles: Vec<mirai_platform::auth::Role> =
        roles.split(',').map(|r| r.parse().unwrap()).collect();
    mirai_platform::testing::request_as(user_id, &roles, message)
}

pub fn client(ip: &str) -> Option<pb::ClientContext> {
    Some(pb::ClientContext {
        ip: ip.to_owned(),
        user_agent: "tests/1.0".to_owned(),
        request_id: "req-1".to_owned(),
    })
}

impl TestApp {
    pub async fn register(&mut self, email: &str) -> pb::User {
        self.client
            .register(pb::RegisterRequest {
                email: email.to_owned(),
                password: PASSWORD.to_owned(),
                client: client("192.0.2.1"),
                ..Default::default()
            })
            .await
            .expect("register")
            .into_inner()
            .user
            .unwrap()
    }

    pub async fn login(
        &mut self,
        email: &str,
        password: &str,
        ip: &str,
    ) -> Result<pb::LoginResponse, tonic::Status> {
        self.client
            .login(pb::LoginRequest {
                email: email.to_owned(),
                password: password.to_owned(),
                client: client(ip),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn refresh(&mut self, token: &str) -> Result<pb::TokenSet, tonic::Status> {
        self.client
            .refresh(pb::RefreshRequest {
                refresh_token: token.to_owned(),
                client: client("192.0.2.9"),
            })
            .await
            .map(|r| r.into_inner().tokens.unwrap())
    }

    /// Audit kinds recorded for `user_id`, oldest first.
    pub async fn audit_kinds(&self, user_id: &str) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT kind FROM audit_events WHERE user_id = $1::uuid ORDER BY audit_event_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}
