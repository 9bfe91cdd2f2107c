//! Integration tests of `mirai-analytics` against real PostgreSQL.

use mirai_platform::config::ServiceConfig;
use mirai_platform::testing::{TestDatabase, conformance};

const BINARY: &str = env!("CARGO_BIN_EXE_mirai-analytics");

#[test]
fn config_errors_name_the_variable() {
    let env = [("DATABASE_URL", "postgres://127.0.0.1/unused".to_owned())];
    conformance::config_errors_name_the_variable(BINARY, &env, "DATABASE_URL");
}

#[tokio::test]
async fn migrations_apply_twice_and_the_service_starts() {
    let db = TestDatabase::create("analytics").await;
    for _ in 0..2 {
        let config = ServiceConfig::for_tests("mirai-analytics", db.url());
        let app = mirai_analytics::startup::build(&config)
            .await
            .expect("starts on a migrated database");
        app.pool.close().await;
    }
}

#[tokio::test]
async fn sigterm_drains_and_exits() {
    let db = TestDatabase::create("analytics").await;
    conformance::sigterm_drains_and_exits(BINARY, &[("DATABASE_URL", db.url().to_owned())], true)
        .await;
}
