//! The client layers under real faults: replicas of a service as real processes behind one
//! gateway, one of them killed under load.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mirai_gateway::config::Rate;
use mirai_platform::events::pubsub::PubSubConfig;
use mirai_platform::grpc::client::Target;
use mirai_platform::testing::{ChildProcess, TestDatabase, free_port, pubsub_env, wait_for_status};
use nix::sys::signal::Signal;
use tokio::sync::Mutex;

use crate::helpers::{Platform, serve};

/// A service binary next to the gateway's (`cargo build --bins` builds them; `scripts/test`
/// does before the tests).
fn service_binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_mirai-gateway"))
        .parent()
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first",
        path.display()
    );
    path
}

/// One stock-data replica as a process: its gRPC URL, admin URL and the process.
struct Replica {
    url: String,
    admin: String,
    process: ChildProcess,
}

fn stock_data_replica(database_url: &str, pubsub: &PubSubConfig, sample: bool) -> Replica {
    let (grpc, admin) = (free_port(), free_port());
    let mut env = pubsub_env(pubsub);
    env.extend([
        ("DATABASE_URL", database_url.to_owned()),
        ("MIRAI_GRPC_ADDR", format!("127.0.0.1:{grpc}")),
        ("MIRAI_ADMIN_ADDR", format!("127.0.0.1:{admin}")),
        ("MIRAI_SAMPLE_DATA", sample.to_string()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    // It must trust the gateway's (test) signing key like the in-process services do.
    env.extend(mirai_platform::testing::identity_env());
    let binary = service_binary("mirai-stock-data");
    Replica {
        url: format!("http://127.0.0.1:{grpc}"),
        admin: format!("http://127.0.0.1:{admin}"),
        process: ChildProcess::spawn(binary.to_str().expect("UTF-8 path"), env),
    }
}

#[tokio::test]
async fn a_replica_killed_under_load_costs_no_request() {
    let platform = Platform::start().await;
    let db = TestDatabase::create("stock_data").await;
    let pubsub = PubSubConfig::for_tests();
    let first = stock_data_replica(db.url(), &pubsub, true);
    wait_for_status(
        &format!("{}/readyz", first.admin),
        200,
        Duration::from_secs(90),
    )
    .await;
    let second = stock_data_replica(db.url(), &pubsub, false);
    wait_for_status(
        &format!("{}/readyz", second.admin),
        200,
        Duration::from_secs(90),
    )
    .await;

    let mut config = platform.gateway_config();
    config.upstreams.stock_data.target =
        Target::Static(vec![first.url.clone(), second.url.clone()]);
    // Long enough that the dead replica is still ejected when the status is read below.
    config.upstreams.stock_data.breaker.open_wait = Duration::from_secs(60);
    config.rate_limits.anonymous = Rate {
        quota: 1_000_000,
        window: Duration::from_secs(1),
    };
    let (base, stop, gateway) = serve(config).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/symbols/SPX");
    assert_eq!(http.get(&url).send().await.unwrap().status(), 200);

    // Eight clients in a closed loop for six seconds; the first replica is killed after two.
    let started = Instant::now();
    let outcomes = Arc::new(Mutex::new(Vec::<(Duration, u16)>::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, outcomes) = (http.clone(), url.clone(), outcomes.clone());
            tokio::spawn(async move {
                while started.elapsed() < Duration::from_secs(6) {
                    let status = match http.get(&url).send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    outcomes.lock().await.push((started.elapsed(), status));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.process.signal(Signal::SIGKILL);
    let killed_at = started.elapsed();
    for worker in workers {
        worker.await.unwrap();
    }

    let outcomes = outcomes.lock().await;
    let failed: Vec<_> = outcomes.iter().filter(|(_, s)| *s != 200).collect();
    let after_kill = outcomes.iter().filter(|(t, _)| *t > killed_at).count();
    eprintln!(
        "{} requests, {} after the kill at {killed_at:?}, {} failed: {failed:?}",
        outcomes.len(),
        after_kill,
        failed.len()
    );
    assert!(
        after_kill > 50,
        "load went on after the kill ({after_kill})"
    );
    // Calls caught on the dead replica are retried on the other one (GetSymbol has no side
    // effects), and the dead one is ejected once its breaker opens.
    assert!(
        failed.is_empty(),
        "{} of {} requests failed",
        failed.len(),
        outcomes.len()
    );

    let status: serde_json::Value = http
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stock_data = &status["services"][1];
    assert_eq!(stock_data["circuit"], "partly_open", "{status}");
    let endpoints = stock_data["endpoints"].as_array().unwrap();
    let state_of = |url: &str| {
        endpoints
            .iter()
            .find(|e| e["endpoint"] == url)
            .map(|e| e["circuit"].clone())
    };
    assert_eq!(state_of(&first.url), Some("open".into()), "{status}");
    assert_eq!(state_of(&second.url), Some("closed".into()), "{status}");
    assert_eq!(stock_data["status"], "SERVING", "the survivor answers");

    stop.cancel();
    gateway.await.unwrap().unwrap();
    second.process.terminate();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = second.process.wait_timeout(Duration::from_secs(30));
        let _ = first.process.wait_timeout(Duration::from_secs(5));
    })
    .await;
}

#[tokio::test]
async fn an_upstream_failing_through_the_fault_layer_trips_only_its_routes_and_recovers() {
    let platform = Platform::start().await;
    mirai_stock_data::bars::load_sample(&platform.services[1].pool)
        .await
        .unwrap();
    let mut config = platform.gateway_config();
    config.upstreams.stock_data.breaker.open_wait = Duration::from_secs(1);
    let app = mirai_gateway::startup::Application::build(config)
        .await
        .unwrap();
    crate::helpers::route_coverage::record(app.metrics());
    let (base, admin) = (
        format!("http://{}", app.http_addr()),
        format!("http://{}", app.admin_addr()),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let gateway = tokio::spawn(app.run_until_stopped(stop.clone()));
    wait_for_status(&format!("{admin}/readyz"), 200, Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    assert_eq!(get("/v1/symbols/SPX").await.unwrap().status(), 200);

    // stock-data's GetSymbol fails with UNAVAILABLE, as a sick replica would.
    platform.services[1].faults.set(
        "mirai.stock.v1.StockDataService/GetSymbol=error(unavailable)"
            .parse()
            .unwrap(),
    );
    let mut rejected_at_once = 0;
    for _ in 0..10 {
        let response = get("/v1/symbols/SPX").await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["upstream"], "stock-data", "{problem}");
        if problem["detail"].as_str().unwrap().contains("circuit open") {
            rejected_at_once += 1;
        }
    }
    assert!(rejected_at_once > 0, "the circuit opened");
    // Other services' routes and the gateway's readiness are untouched.
    assert_eq!(get("/v1/models").await.unwrap().status(), 200);
    assert_eq!(
        mirai_platform::testing::http_status(&format!("{admin}/readyz")).await,
        Some(200)
    );

    // The fault goes away: after the open wait, trial calls close the circuit again.
    platform.services[1].faults.clear();
    let mut last = 0;
    for _ in 0..50 {
        last = get("/v1/symbols/SPX").await.unwrap().status().as_u16();
        if last == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 200);
    for _ in 0..2 {
        assert_eq!(get("/v1/symbols/SPX").await.unwrap().status(), 200);
    }
    let status: serde_json::Value = get("/v1/status").await.unwrap().json().await.unwrap();
    assert_eq!(status["services"][1]["circuit"], "closed", "{status}");

    stop.cancel();
    gateway.await.unwrap().unwrap();
}
