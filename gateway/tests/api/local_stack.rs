//! The README's first command, run the way a developer runs it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mirai_platform::testing::{ChildProcess, http_status, wait_for_status};
use nix::sys::signal::Signal;

#[tokio::test]
async fn dev_up_brings_the_platform_up_and_ctrl_c_stops_it() {
    // Offsets keep this stack clear of a developer's (offset 0) and of the ephemeral port range
    // other tests bind from: gRPC ports land in 61051..64455, the rest below 25000.
    let offset = 11_000 + (std::process::id() % 340) * 10;
    let stack = dev_up(offset, &[]);

    let gateway = format!("http://127.0.0.1:{}", 8080 + offset);
    let admin = format!("http://127.0.0.1:{}", 9090 + offset);
    wait_for_platform(offset, Duration::from_secs(180)).await;
    ctrl_c(stack, offset, &gateway, &format!("{admin}/healthz")).await;
}

/// `scripts/dev-up` on the debug binaries with every port moved by `offset`, on databases of its
/// own (`mirai_*_e2e<offset>`: a developer's stack, or an older schema, is never touched) and an
/// emulator of its own (the dev command's own start is exercised, not the test run's emulator).
fn dev_up(offset: u32, env: &[(&str, &str)]) -> ChildProcess {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let mut command = Command::new("bash");
    command
        .arg(root.join("scripts/dev-up"))
        .current_dir(root)
        .env("MIRAI_SKIP_BUILD", "1")
        .env("MIRAI_DEV_PORT_OFFSET", offset.to_string())
        .env("MIRAI_DEV_DB_SUFFIX", format!("_e2e{offset}"))
        .env_remove("PUBSUB_EMULATOR_HOST")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .envs(env.iter().copied());
    if let Ok(server) = std::env::var("MIRAI_TEST_DATABASE_URL") {
        command.env("DATABASE_URL", server);
    }
    ChildProcess::from_command(command)
}

/// Waits for what dev-up itself waits for — the gateway's `/readyz` (the gateway can serve) and
/// every service ready in `/v1/status` (a gateway is ready before the services behind it
/// are) — and then for dev-up to have seen it too (it writes `.dev/run-<offset>/ready` after
/// printing the URLs), so that a Ctrl-C after this finds the URLs printed.
async fn wait_for_platform(offset: u32, timeout: Duration) {
    let admin = format!("http://127.0.0.1:{}", 9090 + offset);
    wait_for_status(&format!("{admin}/readyz"), 200, timeout).await;
    let status = format!("http://127.0.0.1:{}/v1/status", 8080 + offset);
    let give_up = tokio::time::Instant::now() + timeout;
    loop {
        let body = match reqwest::get(&status).await {
            Ok(answer) => answer.json::<serde_json::Value>().await.ok(),
            Err(_) => None,
        };
        let announced = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../.dev/run-{offset}/ready"))
            .exists();
        if announced && body.as_ref().is_some_and(|b| b["ready"] == true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{status} did not report every service ready (and dev-up announce it) within {timeout:?}: {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `MIRAI_DEV_TRACES=1`: a request's spans — the gateway's, the user service's and its
/// database statements' — arrive in the local trace viewer as one trace, queried through the
/// viewer's own REST API.
#[tokio::test]
async fn dev_up_with_traces_shows_a_request_across_processes_in_the_trace_viewer() {
    // Offsets ending in 3: clear of the other dev-up test's (ending in 0).
    let offset = 11_003 + (std::process::id() % 340) * 10;
    let stack = dev_up(offset, &[("MIRAI_DEV_TRACES", "1")]);
    let gateway = format!("http://127.0.0.1:{}", 8080 + offset);
    let viewer = format!("http://127.0.0.1:{}", 6006 + offset);
    // The first run installs the viewer from PyPI (about two minutes) before starting anything.
    wait_for_platform(offset, Duration::from_secs(420)).await;
    let trace_id = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    let http = reqwest::Client::new();
    // A 503 is an answer a client retries after `Retry-After` (a stack that just started on a
    // busy machine may shed or wait for a database connection); it is printed, not hidden.
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let (status, headers, body) = crate::helpers::answer(
            http.post(format!("{gateway}/v1/auth/register"))
                .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
                .json(&serde_json::json!({
                    "email": "traced-locally@example.com",
                    "password": crate::helpers::PASSWORD,
                }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if status != 503 || tokio::time::Instant::now() > give_up {
            break (status, body);
        }
        eprintln!("register answered 503 (retrying): {body}");
        let wait = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    assert_eq!(status, 201, "{body}");
    // Spans leave each process in batches (every few seconds).
    let mut names: Vec<String> = Vec::new();
    let wanted = |names: &[String]| {
        names.iter().any(|n| n == "POST /v1/auth/register")
            && names.iter().any(|n| n.starts_with("mirai.user."))
            && names.iter().any(|n| n == "INSERT users")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !wanted(&names) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (_, _, spans) = crate::helpers::answer(
            http.get(format!(
                "{viewer}/v1/projects/default/spans?trace_id={trace_id}&limit=1000"
            ))
            .send()
            .await
            .unwrap(),
        )
        .await;
        names = spans["data"]
            .as_array()
            .expect("a list of spans")
            .iter()
            .map(|span| span["name"].as_str().unwrap_or_default().to_owned())
            .collect();
    }
    assert!(
        wanted(&names),
        "the trace viewer holds {names:?} for trace {trace_id}"
    );
    ctrl_c(stack, offset, &viewer, &format!("{viewer}/healthz")).await;
}

/// Ctrl-C to a `dev_up` stack: it exits 0 within 90 s, its output names `printed`, `gone` no
/// longer answers, and its databases are dropped.
async fn ctrl_c(stack: ChildProcess, offset: u32, printed: &str, gone: &str) {
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
        stdout.contains(printed),
        "dev-up prints {printed}:\n{stdout}"
    );
    assert_eq!(http_status(gone).await, None, "{gone} still answers");
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
