//! `mirai-chaos`: the chaos and rolling-restart harness behind `scripts/chaos`.
//!
//! Starts two replicas of every service and two gateways (supervised here: what the harness
//! kills it restarts, on the same ports and state), runs an open-model workload through both
//! gateways and a replay of SPX bars that fires alerts, injects one fault at a time with a
//! quiet recovery after it, checks the invariants from the databases after each scenario, and
//! writes the figures into `docs/reliability.md` between marker comments.
//!
//! ```text
//! mirai-chaos [--smoke] [--scenarios name,name,...] [--report path] [--rate x]
//! ```
//!
//! Environment (set by `scripts/chaos`): `MIRAI_CHAOS_BIN_DIR` (the binaries),
//! `MIRAI_CHAOS_PG` (PostgreSQL server URL without a database), `PUBSUB_EMULATOR_HOST`,
//! `GOOGLE_CLOUD_PROJECT`, `MIRAI_CHAOS_EMULATOR_PID` (to pause the emulator; the Pub/Sub
//! scenario is skipped without it), `MIRAI_CHAOS_PORT_BASE`, `MIRAI_CHAOS_RUN_DIR`,
//! `MIRAI_CHAOS_PROFILE` (named in the report).

mod invariants;
mod proxy;
mod replay;
mod report;
mod stack;
mod webhooks;
mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use nix::sys::signal::Signal;
use sqlx::Connection;

use crate::invariants::{Databases, Stop};
use crate::report::{Outcome, Run};
use crate::stack::{Kind, Layout, SERVICES, Stack};
use crate::workload::Workload;

#[derive(Debug)]
struct Options {
    smoke: bool,
    scenarios: Option<Vec<String>>,
    report: Option<std::path::PathBuf>,
    rate: f64,
}

fn options() -> Result<Options> {
    let mut options = Options {
        smoke: false,
        scenarios: None,
        report: None,
        rate: 1.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--smoke" => options.smoke = true,
            "--scenarios" => {
                let list = args
                    .next()
                    .context("--scenarios needs a comma-separated list")?;
                options.scenarios = Some(list.split(',').map(str::to_owned).collect());
            }
            "--report" => {
                options.report = Some(args.next().context("--report needs a path")?.into())
            }
            "--rate" => {
                options.rate = args
                    .next()
                    .context("--rate needs a number")?
                    .parse()
                    .context("--rate")?;
            }
            other => bail!(
                "unknown argument {other:?} (--smoke, --scenarios a,b, --report path, --rate x)"
            ),
        }
    }
    Ok(options)
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} must be set (scripts/chaos sets it)"))
}

/// The scenarios, in order: name → fault.
#[derive(Clone, Debug)]
enum Fault {
    Kill(Kind),
    Stop(Kind),
    Rolling(Vec<Kind>),
    TerminateBackends(Kind),
    DatabaseCut(Kind),
    PubSubPause,
    Injected(Kind),
}

/// Every scenario. The SIGKILLs come last: on the emulator, a consumer killed while it held an
/// ordered message leaves that ordering key stalled for the rest of the run (see
/// `invariants::held_by_the_emulator`), which would blur every later scenario's figures.
fn all_scenarios() -> Vec<(String, Fault)> {
    let mut list = Vec::new();
    for kind in SERVICES {
        list.push((format!("stop-{}", kind.name()), Fault::Stop(kind)));
    }
    let mut every = SERVICES.to_vec();
    every.push(Kind::Gateway);
    list.push(("rolling-all".into(), Fault::Rolling(every)));
    list.push(("rolling-user".into(), Fault::Rolling(vec![Kind::User])));
    list.push((
        "pg-terminate-notification".into(),
        Fault::TerminateBackends(Kind::Notification),
    ));
    list.push((
        "db-cut-notification".into(),
        Fault::DatabaseCut(Kind::Notification),
    ));
    list.push(("pubsub-pause".into(), Fault::PubSubPause));
    list.push((
        "fault-layer-stock-data".into(),
        Fault::Injected(Kind::StockData),
    ));
    for kind in SERVICES.into_iter().chain([Kind::Gateway]) {
        list.push((format!("kill-{}", kind.name()), Fault::Kill(kind)));
    }
    list
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = options()?;
    let port_base: u16 = std::env::var("MIRAI_CHAOS_PORT_BASE")
        // Below the kernel's ephemeral range (32768–60999), where an outgoing connection can
        // hold any port, and clear of dev-up (8080–9095, 50051–50055), the end-to-end test's
        // stacks (19080 and up) and the emulators (25000–32999).
        .unwrap_or_else(|_| if options.smoke { "16000" } else { "15000" }.into())
        .parse()
        .context("MIRAI_CHAOS_PORT_BASE")?;
    let pg_server = env("MIRAI_CHAOS_PG")?.trim_end_matches('/').to_owned();
    let suffix = if options.smoke {
        "_chaos_smoke"
    } else {
        "_chaos"
    };
    let run_dir: std::path::PathBuf = env("MIRAI_CHAOS_RUN_DIR")?.into();
    let layout = Layout {
        port_base,
        bin_dir: env("MIRAI_CHAOS_BIN_DIR")?.into(),
        run_dir: run_dir.clone(),
        pg_server: pg_server.clone(),
        db_suffix: suffix.into(),
        emulator: env("PUBSUB_EMULATOR_HOST")?,
        project: env("GOOGLE_CLOUD_PROJECT")?,
        pubsub_prefix: format!("chaos-{}-", std::process::id()),
        rust_log: std::env::var("MIRAI_CHAOS_RUST_LOG").unwrap_or_else(|_| "warn".into()),
    };
    let emulator_pid: Option<i32> = std::env::var("MIRAI_CHAOS_EMULATOR_PID")
        .ok()
        .and_then(|p| p.parse().ok());

    let scenarios: Vec<(String, Fault)> = match (&options.scenarios, options.smoke) {
        (Some(names), _) => {
            let all = all_scenarios();
            names
                .iter()
                .map(|n| {
                    all.iter()
                        .find(|(name, _)| name == n)
                        .cloned()
                        .with_context(|| {
                            format!(
                                "unknown scenario {n}; known: {}",
                                all.iter()
                                    .map(|s| s.0.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                })
                .collect::<Result<_>>()?
        }
        (None, true) => vec![
            ("rolling-user".into(), Fault::Rolling(vec![Kind::User])),
            ("kill-notification".into(), Fault::Kill(Kind::Notification)),
        ],
        (None, false) => all_scenarios()
            .into_iter()
            .filter(|(n, _)| n != "rolling-user")
            .collect(),
    };

    // Fresh databases (the services migrate them at start).
    recreate_databases(&pg_server, &layout).await?;
    std::fs::create_dir_all(&run_dir)?;
    let pg_addr = pg_socket(&pg_server)?;
    let (hooks, hook_url) = webhooks::Receiver::start(port_base + 400).await?;
    let stack = Arc::new(Stack::new(layout.clone(), pg_addr).await?);
    let run_began = Instant::now();
    // Ctrl-C or SIGTERM (scripts/chaos passes them on) still stops every process started here.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        result = run(&options, stack.clone(), scenarios, hooks, hook_url, emulator_pid) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    eprintln!("chaos: stopping the stack");
    if let Some(pid) = emulator_pid {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGCONT);
    }
    stack.stop_all().await;
    let run = result?;
    let path = options
        .report
        .clone()
        .unwrap_or_else(|| "docs/reliability.md".into());
    if !options.smoke || options.report.is_some() {
        report::write(&path, &run)?;
        eprintln!("chaos: report written to {}", path.display());
    }
    print!("{}", report::summary(&run));
    eprintln!(
        "chaos: whole run {:.0} s",
        run_began.elapsed().as_secs_f64()
    );
    if !run.targets_met() {
        bail!("targets missed (see the summary above)");
    }
    Ok(())
}

fn pg_socket(server: &str) -> Result<std::net::SocketAddr> {
    let host_port = server
        .rsplit('@')
        .next()
        .unwrap_or(server)
        .trim_start_matches("postgres://")
        .trim_start_matches("postgresql://");
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    use std::net::ToSocketAddrs;
    host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("PostgreSQL address {host_port}"))
}

async fn recreate_databases(server: &str, layout: &Layout) -> Result<()> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    for kind in SERVICES {
        let db = layout.database(kind);
        // The names are the five fixed database names plus the run's fixed suffix.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db}\"")))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

async fn run(
    options: &Options,
    stack: Arc<Stack>,
    scenarios: Vec<(String, Fault)>,
    hooks: webhooks::Receiver,
    hook_url: String,
    emulator_pid: Option<i32>,
) -> Result<Run> {
    let boot = Instant::now();
    stack.start_all().await?;
    let startup = boot.elapsed();
    eprintln!("chaos: stack ready after {:.1} s", startup.as_secs_f64());
    stack.spawn_endpoint_poller();
    let dbs = Arc::new(Databases::connect(&stack.layout).await?);
    let since = Utc::now() - chrono::Duration::seconds(5);

    let workload =
        Workload::prepare(stack.clone(), if options.smoke { 4 } else { 8 }, hook_url).await?;
    // The admin who runs the replays, made in the database as the first admin of a deployment is.
    let admin_email = format!("chaos-admin-{}@example.com", uuid::Uuid::now_v7().simple());
    let (status, body) = workload
        .call(
            "POST",
            "/v1/auth/register",
            None,
            Some(serde_json::json!({"email": admin_email, "password": workload::PASSWORD})),
        )
        .await?;
    if status != 201 {
        bail!("registering the admin: {status} {body}");
    }
    sqlx::query("UPDATE users SET roles = '{user,admin}' WHERE email = $1")
        .bind(&admin_email)
        .execute(dbs.pool(Kind::User))
        .await?;

    let bars = replay::stored_bars(&dbs).await?;
    if bars.len() < 200 {
        bail!(
            "stock-data holds {} SPX daily bars; the sample data did not load",
            bars.len()
        );
    }
    let scale = options.rate * if options.smoke { 0.6 } else { 1.0 };
    let tasks = workload.start(scale);
    let quiet = Duration::from_secs(if options.smoke { 5 } else { 15 });
    let replay_bars = if options.smoke { 40 } else { 80 };
    // Recent history first (the alert levels come from each slice's range).
    let mut cursor = bars
        .len()
        .saturating_sub(replay_bars * (scenarios.len() + 1));
    let mut outcomes = Vec::new();
    let mut replayed = Vec::new();
    let mut stops = Vec::new();
    for (index, (name, fault)) in scenarios.into_iter().enumerate() {
        eprintln!("chaos: == scenario {name}");
        let slice: Vec<_> = bars[cursor..cursor + replay_bars].to_vec();
        cursor += replay_bars;
        let lo = slice.iter().map(|b| b.1).fold(f64::MAX, f64::min);
        let hi = slice.iter().map(|b| b.2).fold(f64::MIN, f64::max);
        *workload.price_range.lock().expect("range") = (lo, hi);
        let starts: Vec<_> = slice.iter().map(|b| b.0).collect();
        replayed.push((
            starts[0],
            *starts.last().expect("bars") + chrono::Duration::hours(1),
        ));
        // A fresh token for each replay: access tokens last 15 minutes, the full list longer.
        let admin_token =
            workload::str_field(&workload.login(&admin_email).await?, "access_token")?;
        let replay = tokio::spawn(replay::run(
            workload.clone(),
            admin_token,
            dbs.clone(),
            starts,
            index as u64 + 1,
            Duration::from_secs(300),
        ));
        // Let the replay and the alerts get going, then the fault.
        tokio::time::sleep(Duration::from_secs(if options.smoke { 3 } else { 6 })).await;
        let opens_before = circuit_opens(&stack).await;
        let began = workload.began.elapsed().as_secs_f64();
        let mut notes = Vec::new();
        // Replicas stopped (killed, or terminated in a rolling restart), for the emulator's
        // stalled ordering keys (`invariants::held_by_the_emulator`).
        let stopped = match &fault {
            Fault::Kill(kind) => vec![*kind],
            Fault::Rolling(kinds) => kinds.clone(),
            _ => Vec::new(),
        };
        stops.extend(stopped.into_iter().map(|kind| Stop {
            kind,
            at: Utc::now(),
        }));
        let applied = inject(&stack, &dbs, &fault, emulator_pid, &mut notes).await;
        let ended = workload.began.elapsed().as_secs_f64();
        if let Err(error) = &applied {
            notes.push(format!("fault not applied as planned: {error:#}"));
        }
        tokio::time::sleep(quiet).await;
        let crashes = stack.reap_crashes().await;
        let replay_starts = match replay.await? {
            Ok(n) => n,
            Err(error) => {
                notes.push(format!("{error:#}"));
                0
            }
        };
        let (findings, settle) = dbs
            .settle(
                since,
                &workload.created,
                &hooks,
                &replayed,
                &stops,
                Duration::from_secs(if options.smoke { 45 } else { 90 }),
            )
            .await?;
        let opens_after = circuit_opens(&stack).await;
        let window_end = workload.began.elapsed().as_secs_f64();
        let records = workload.records.lock().expect("records").clone();
        outcomes.push(Outcome::new(
            name,
            &fault_text(&fault),
            &records,
            (began, ended, window_end),
            findings,
            settle,
            replay_starts,
            crashes,
            opens_after.saturating_sub(opens_before),
            notes,
        ));
        eprintln!("chaos: {}", report::line(outcomes.last().expect("pushed")));
    }
    workload.stop();
    for task in tasks {
        let _ = task.await;
    }
    Ok(Run {
        smoke: options.smoke,
        profile: std::env::var("MIRAI_CHAOS_PROFILE").unwrap_or_else(|_| "release".into()),
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        startup,
        requests: workload.records.lock().expect("records").len(),
        rate: workload::MIX.iter().map(|m| m.1).sum::<f64>() * scale,
        redeliveries: hooks.redeliveries(),
        webhooks: hooks.ids().len(),
        outcomes,
    })
}

fn fault_text(fault: &Fault) -> String {
    match fault {
        Fault::Kill(Kind::Gateway) => "SIGKILL of gateway-a, restarted after 3 s".into(),
        Fault::Kill(Kind::StockData) => {
            "SIGKILL of the stock-data leader (running the replay), restarted after 3 s".into()
        }
        Fault::Kill(kind) => format!("SIGKILL of {}-a mid-flow, restarted after 3 s", kind.name()),
        Fault::Stop(kind) => format!("SIGSTOP of {}-a for 15 s, then SIGCONT", kind.name()),
        Fault::Rolling(kinds) => format!(
            "rolling restart, one replica at a time (SIGTERM → exit → start → ready): {}",
            kinds
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Fault::TerminateBackends(kind) => format!(
            "pg_terminate_backend of every connection of {}",
            kind.name()
        ),
        Fault::DatabaseCut(kind) => format!(
            "{}'s database unreachable for 10 s (both replicas)",
            kind.name()
        ),
        Fault::PubSubPause => "Pub/Sub emulator SIGSTOPped for 20 s".into(),
        Fault::Injected(kind) => format!(
            "{} (both replicas) through the fault layer for 20 s: every call +300 ms at 50 %, GetQuote UNAVAILABLE at 20 %",
            kind.name()
        ),
    }
}

/// Transitions to open of every circuit, summed over both gateways.
async fn circuit_opens(stack: &Stack) -> u64 {
    let mut total = 0;
    for gateway in stack.gateways() {
        let Ok(response) = stack
            .http
            .get(format!("{}/metrics", gateway.admin))
            .send()
            .await
        else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("mirai_circuit_transitions_total{") && l.contains("to=\"open\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

/// The replica of stock-data that holds the feeds' lease (`mirai_leader` = 1).
async fn stock_data_leader(stack: &Stack) -> u16 {
    for replica in 0..2 {
        let url = format!("{}/metrics", stack.instance(Kind::StockData, replica).admin);
        if let Ok(response) = stack.http.get(url).send().await {
            let text = response.text().await.unwrap_or_default();
            if text
                .lines()
                .any(|l| l.starts_with("mirai_leader{") && l.trim_end().ends_with(" 1"))
            {
                return replica;
            }
        }
    }
    0
}

async fn inject(
    stack: &Stack,
    dbs: &Databases,
    fault: &Fault,
    emulator_pid: Option<i32>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let ready_limit = Duration::from_secs(120);
    match fault {
        Fault::Kill(kind) => {
            let replica = if *kind == Kind::StockData {
                stock_data_leader(stack).await
            } else {
                0
            };
            let victim = stack.instance(*kind, replica);
            victim.kill_now().await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            victim.start().await?;
            let took = victim.wait_ready(&stack.http, ready_limit).await?;
            notes.push(format!(
                "{} killed; ready {:.1} s after its restart",
                victim.label(),
                took.as_secs_f64()
            ));
        }
        Fault::Stop(kind) => {
            let victim = stack.instance(*kind, 0);
            victim.signal(Signal::SIGSTOP)?;
            tokio::time::sleep(Duration::from_secs(15)).await;
            victim.signal(Signal::SIGCONT)?;
        }
        Fault::Rolling(kinds) => {
            for kind in kinds {
                for replica in 0..2 {
                    let instance = stack.instance(*kind, replica);
                    instance.signal(Signal::SIGTERM)?;
                    let (exit, clean) = instance.wait_exit(Duration::from_secs(40)).await?;
                    if !clean {
                        notes.push(format!(
                            "{} exited uncleanly after SIGTERM",
                            instance.label()
                        ));
                    }
                    instance.start().await?;
                    let ready = instance.wait_ready(&stack.http, ready_limit).await?;
                    notes.push(format!(
                        "{}: exit {:.1} s, ready {:.1} s",
                        instance.label(),
                        exit.as_secs_f64(),
                        ready.as_secs_f64()
                    ));
                    // As a Deployment's minReadySeconds: let the balancers see it before the next.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        Fault::TerminateBackends(kind) => {
            let n = dbs.terminate_connections(&stack.layout, *kind).await?;
            notes.push(format!("{n} connections terminated"));
        }
        Fault::DatabaseCut(kind) => {
            let proxy = &stack.proxies[kind];
            proxy.cut();
            tokio::time::sleep(Duration::from_secs(10)).await;
            proxy.restore();
        }
        Fault::PubSubPause => {
            let Some(pid) = emulator_pid else {
                bail!(
                    "no emulator PID (MIRAI_CHAOS_EMULATOR_PID): the emulator is not the harness's own"
                );
            };
            let pid = nix::unistd::Pid::from_raw(pid);
            nix::sys::signal::kill(pid, Signal::SIGSTOP)?;
            tokio::time::sleep(Duration::from_secs(20)).await;
            nix::sys::signal::kill(pid, Signal::SIGCONT)?;
        }
        Fault::Injected(kind) => {
            let rules = "mirai.stock.v1.StockDataService=delay(300ms,0.5);mirai.stock.v1.StockDataService/GetQuote=error(unavailable,0.2)";
            for replica in 0..2 {
                let url = format!("{}/faults", stack.instance(*kind, replica).admin);
                let response = stack.http.put(&url).body(rules).send().await?;
                if !response.status().is_success() {
                    bail!("PUT {url}: {}", response.status());
                }
            }
            tokio::time::sleep(Duration::from_secs(20)).await;
            for replica in 0..2 {
                let url = format!("{}/faults", stack.instance(*kind, replica).admin);
                stack.http.delete(&url).send().await?;
            }
        }
    }
    Ok(())
}
