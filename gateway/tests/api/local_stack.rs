//! The README's first command, run the way a developer runs it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mirai_platform::testing::{ChildProcess, http_status, wait_for_status};
use nix::sys::signal::Signal;

#[tokio::test]
async fn dev_up_brings_the_platform_up_and_ctrl_c_stops_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    // Offsets keep this stack clear of a developer's (offset 0) and of the ephemeral port range
    // other tests bind from: gRPC ports land in 61051..64455, the rest below 25000.
    let offset = 11_000 + (std::process::id() % 340) * 10;
    let mut command = Command::new("bash");
    command
        .arg(root.join("scripts/dev-up"))
        .current_dir(root)
        .env("MIRAI_SKIP_BUILD", "1")
        .env("MIRAI_DEV_PORT_OFFSET", offset.to_string())
        // Its own databases: a developer's stack (or an older schema) is never touched.
        .env("MIRAI_DEV_DB_SUFFIX", format!("_e2e{offset}"))
        // Exercise the dev command's own emulator start, not the test run's emulator.
        .env_remove("PUBSUB_EMULATOR_HOST");
    if let Ok(server) = std::env::var("MIRAI_TEST_DATABASE_URL") {
        command.env("DATABASE_URL", server);
    }
    let stack = ChildProcess::from_command(command);

    let gateway = format!("http://127.0.0.1:{}", 8080 + offset);
    let admin = format!("http://127.0.0.1:{}", 9090 + offset);
    wait_for_status(&format!("{admin}/readyz"), 200, Duration::from_secs(180)).await;
    assert_eq!(
        http_status(&format!("{gateway}/v1/status")).await,
        Some(200)
    );

    // dev-up polls readiness itself every 100 ms before printing the URL; give it that moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.signal(Signal::SIGINT);
    let (status, stdout, stderr) =
        tokio::task::spawn_blocking(move || stack.wait_timeout(Duration::from_secs(90)))
            .await
            .expect("join")
            .expect("dev-up stops within 90 s of Ctrl-C");
    assert!(
        status.success(),
        "dev-up exit {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains(&gateway),
        "dev-up prints the gateway URL:\n{stdout}"
    );
    assert_eq!(
        http_status(&format!("{admin}/healthz")).await,
        None,
        "gateway stopped"
    );
    drop_databases(&format!("_e2e{offset}")).await;
}

/// Drops the databases the run created (`mirai_*<suffix>`).
async fn drop_databases(suffix: &str) {
    use sqlx::Connection as _;
    let server = std::env::var("MIRAI_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
    for name in ["user", "stock", "prediction", "analytics", "notification"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"mirai_{name}{suffix}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}
