//! Starting the five services in-process, each on port 0 with a fresh database.

use std::net::SocketAddr;

use mirai_platform::app::ServiceApp;
use mirai_platform::config::ServiceConfig;
use mirai_platform::events::pubsub::PubSubConfig;
use mirai_platform::testing::TestDatabase;
use tokio_util::sync::CancellationToken;

/// One running service: its addresses and a token that stops it.
pub struct RunningService {
    pub name: &'static str,
    pub grpc_addr: SocketAddr,
    pub pool: sqlx::PgPool,
    pub stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

impl RunningService {
    /// Stops the service and waits until it has drained.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn start(name: &'static str, db: TestDatabase, app: ServiceApp) -> RunningService {
    let grpc_addr = app.grpc_addr();
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
        pool,
        stop,
        task,
        _db: db,
    }
}

/// All five services, in ARCHITECTURE.md order, sharing one set of topics on the emulator.
pub struct Platform {
    pub services: Vec<RunningService>,
}

impl Platform {
    pub async fn start() -> Self {
        let pubsub = PubSubConfig::for_tests();
        let mut services = Vec::new();
        macro_rules! service {
            ($name:literal, $krate:ident) => {{
                let db = TestDatabase::create(
                    $name
                        .trim_start_matches("mirai-")
                        .replace('-', "_")
                        .as_str(),
                )
                .await;
                let mut config = ServiceConfig::for_tests($name, db.url());
                config.pubsub = pubsub.clone();
                let app = $krate::startup::build(&config)
                    .await
                    .expect(concat!($name, " builds"));
                services.push(start($name, db, app).await);
            }};
        }
        service!("mirai-user", mirai_user);
        service!("mirai-stock-data", mirai_stock_data);
        service!("mirai-prediction", mirai_prediction);
        service!("mirai-analytics", mirai_analytics);
        service!("mirai-notification", mirai_notification);
        Self { services }
    }

    /// A gateway configuration in front of these services, listening on free ports.
    pub fn gateway_config(&self) -> mirai_gateway::config::Config {
        let mut env = self.upstream_env();
        env.push(("MIRAI_HTTP_ADDR", "127.0.0.1:0".to_owned()));
        env.push(("MIRAI_ADMIN_ADDR", "127.0.0.1:0".to_owned()));
        mirai_gateway::config::Config::from_env(&mirai_platform::config::Env::from_pairs(env))
            .expect("valid config")
    }

    /// The gateway's upstream URL variables pointing at these services.
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
            .collect()
    }
}
