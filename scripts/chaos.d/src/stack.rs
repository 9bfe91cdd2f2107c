//! The supervised stack: two replicas of every service and two gateways, each a child process
//! the harness starts, signals, stops and restarts itself (on the same ports, database and
//! Pub/Sub names), unlike `scripts/dev-up`, which stops everything when one process exits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::proxy::Proxy;

/// The five services, in start order, with their database and index (for ports).
pub const SERVICES: [Kind; 5] = [
    Kind::User,
    Kind::StockData,
    Kind::Prediction,
    Kind::Analytics,
    Kind::Notification,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    User,
    StockData,
    Prediction,
    Analytics,
    Notification,
    Gateway,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::StockData => "stock-data",
            Kind::Prediction => "prediction",
            Kind::Analytics => "analytics",
            Kind::Notification => "notification",
            Kind::Gateway => "gateway",
        }
    }

    fn index(self) -> u16 {
        self as u16
    }

    /// The service's database (before the run's suffix).
    pub fn database(self) -> &'static str {
        match self {
            Kind::User => "mirai_user",
            Kind::StockData => "mirai_stock",
            Kind::Prediction => "mirai_prediction",
            Kind::Analytics => "mirai_analytics",
            Kind::Notification => "mirai_notification",
            Kind::Gateway => "",
        }
    }
}

/// Where everything listens and what it connects to.
#[derive(Clone, Debug)]
pub struct Layout {
    pub port_base: u16,
    pub bin_dir: PathBuf,
    pub run_dir: PathBuf,
    /// PostgreSQL server URL without a database (`postgres://user@host:port`).
    pub pg_server: String,
    pub db_suffix: String,
    pub emulator: String,
    pub project: String,
    pub pubsub_prefix: String,
    pub rust_log: String,
}

impl Layout {
    pub fn grpc_port(&self, kind: Kind, replica: u16) -> u16 {
        self.port_base + 100 + kind.index() * 10 + replica
    }
    pub fn admin_port(&self, kind: Kind, replica: u16) -> u16 {
        match kind {
            Kind::Gateway => self.port_base + 10 + replica,
            _ => self.port_base + 200 + kind.index() * 10 + replica,
        }
    }
    pub fn http_port(&self, replica: u16) -> u16 {
        self.port_base + replica
    }
    /// The loopback proxy in front of PostgreSQL for one service's pools.
    pub fn db_proxy_port(&self, kind: Kind) -> u16 {
        self.port_base + 300 + kind.index()
    }
    pub fn database(&self, kind: Kind) -> String {
        format!("{}{}", kind.database(), self.db_suffix)
    }
    pub fn database_url(&self, kind: Kind) -> String {
        format!("{}/{}", self.pg_server, self.database(kind))
    }
    /// A service's database URL through its proxy (what the service itself uses).
    fn proxied_database_url(&self, kind: Kind) -> String {
        let (scheme_user, _) = self
            .pg_server
            .rsplit_once('@')
            .unwrap_or(("postgres://", ""));
        let user = scheme_user.trim_end_matches('@');
        let sep = if user.ends_with("://") { "" } else { "@" };
        format!(
            "{user}{sep}127.0.0.1:{}/{}",
            self.db_proxy_port(kind),
            self.database(kind)
        )
    }
    /// Every replica of a service, as the comma-separated list the client-side balancer takes.
    fn upstream(&self, kind: Kind) -> String {
        (0..2)
            .map(|r| format!("http://127.0.0.1:{}", self.grpc_port(kind, r)))
            .collect::<Vec<_>>()
            .join(",")
    }
    /// The internal identity of a process kind: its signing key and the trust set, made in the
    /// run folder by scripts/chaos (`make_identity_keys`); both replicas share them.
    fn identity_env(&self, kind: Kind) -> [(&'static str, String); 2] {
        let dir = self.run_dir.join("identity");
        [
            (
                "MIRAI_INTERNAL_SIGNING_KEY",
                dir.join(format!("{}.pem", kind.name()))
                    .display()
                    .to_string(),
            ),
            (
                "MIRAI_INTERNAL_TRUSTED_KEYS",
                dir.join("trusted-keys.json").display().to_string(),
            ),
        ]
    }
    pub fn gateway_url(&self, replica: u16) -> String {
        format!("http://127.0.0.1:{}", self.http_port(replica))
    }
    pub fn admin_url(&self, kind: Kind, replica: u16) -> String {
        format!("http://127.0.0.1:{}", self.admin_port(kind, replica))
    }
}

/// Environment shared by the five services.
fn service_env(layout: &Layout, kind: Kind, replica: u16) -> Vec<(String, String)> {
    let mut env = vec![
        ("DATABASE_URL", layout.proxied_database_url(kind)),
        (
            "MIRAI_GRPC_ADDR",
            format!("127.0.0.1:{}", layout.grpc_port(kind, replica)),
        ),
        (
            "MIRAI_ADMIN_ADDR",
            format!("127.0.0.1:{}", layout.admin_port(kind, replica)),
        ),
        ("PUBSUB_EMULATOR_HOST", layout.emulator.clone()),
        ("GOOGLE_CLOUD_PROJECT", layout.project.clone()),
        ("MIRAI_PUBSUB_PREFIX", layout.pubsub_prefix.clone()),
        ("MIRAI_FAULT_INJECTION", "on".into()),
        // Ten processes share one PostgreSQL server (100 connections, other test runs too):
        // pools of 4 (notification 5, which once never became ready with 5 while its four
        // LISTEN connections came out of its pool; they are now connections of their own).
        (
            "MIRAI_DB_MAX_CONNECTIONS",
            if kind == Kind::Notification { "5" } else { "4" }.into(),
        ),
        ("MIRAI_SHUTDOWN_GRACE", "20s".into()),
        ("RUST_LOG", layout.rust_log.clone()),
        ("MIRAI_LOG_FORMAT", "json".into()),
        (
            "OTEL_SERVICE_NAME",
            format!("mirai-{}-{}", kind.name(), replica_name(replica)),
        ),
    ];
    env.extend(layout.identity_env(kind));
    env.extend(match kind {
        Kind::User => user_env(layout),
        Kind::StockData => stock_data_env(layout),
        Kind::Prediction => prediction_env(layout),
        Kind::Analytics => analytics_env(layout),
        Kind::Notification => notification_env(layout),
        Kind::Gateway => unreachable!("the gateway is not a service"),
    });
    env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

// One function per process kind: a new variable for one kind is one line here.

fn user_env(layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        // Both replicas sign with the same keys, kept in the run folder.
        (
            "MIRAI_JWT_KEYS_DIR",
            layout.run_dir.join("jwt-keys").display().to_string(),
        ),
        ("MIRAI_JWT_GENERATE_KEYS", "true".into()),
        // Deletions must finish within the harness's bound even when a message was lost.
        ("MIRAI_DELETION_REMIND_AFTER", "20s".into()),
        ("MIRAI_DELETION_SWEEP_INTERVAL", "5s".into()),
    ]
}

fn stock_data_env(_layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        ("MIRAI_SAMPLE_DATA", "true".into()),
        // The replay feed runs on one replica: a PostgreSQL advisory lock elects it.
        ("MIRAI_LEADER_BACKEND", "postgres".into()),
    ]
}

fn prediction_env(layout: &Layout) -> Vec<(&'static str, String)> {
    vec![("MIRAI_STOCK_DATA_URL", layout.upstream(Kind::StockData))]
}

fn analytics_env(layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        ("MIRAI_STOCK_DATA_URL", layout.upstream(Kind::StockData)),
        ("MIRAI_PREDICTION_URL", layout.upstream(Kind::Prediction)),
    ]
}

fn notification_env(_layout: &Layout) -> Vec<(&'static str, String)> {
    vec![
        // Webhooks go to the harness's receiver on loopback.
        ("MIRAI_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true".into()),
        // An unanswered activation is asked again after 10 s (not 30 s): sagas finish within
        // the harness's bound even when Pub/Sub was paused.
        ("MIRAI_ALERT_ACTIVATION_TIMEOUT", "10s".into()),
        ("MIRAI_ALERT_LIMIT_USER", "1000".into()),
    ]
}

fn gateway_env(layout: &Layout, replica: u16) -> Vec<(String, String)> {
    let unlimited = "1000000000/1s".to_owned();
    [
        (
            "MIRAI_HTTP_ADDR",
            format!("127.0.0.1:{}", layout.http_port(replica)),
        ),
        (
            "MIRAI_ADMIN_ADDR",
            format!("127.0.0.1:{}", layout.admin_port(Kind::Gateway, replica)),
        ),
        ("MIRAI_USER_URL", layout.upstream(Kind::User)),
        ("MIRAI_STOCK_DATA_URL", layout.upstream(Kind::StockData)),
        ("MIRAI_PREDICTION_URL", layout.upstream(Kind::Prediction)),
        ("MIRAI_ANALYTICS_URL", layout.upstream(Kind::Analytics)),
        (
            "MIRAI_NOTIFICATION_URL",
            layout.upstream(Kind::Notification),
        ),
        // Rate limits are lifted: the subject is the platform under faults, not the limiter.
        ("MIRAI_RATE_LIMIT_USER", unlimited.clone()),
        ("MIRAI_RATE_LIMIT_PREMIUM", unlimited.clone()),
        ("MIRAI_RATE_LIMIT_ANONYMOUS", unlimited.clone()),
        ("MIRAI_RATE_LIMIT_AUTH", unlimited),
        // As behind a Kubernetes Service: readiness goes off, the balancer (the harness's
        // endpoint poller) takes the gateway out, then the listener closes.
        ("MIRAI_SHUTDOWN_DRAIN_DELAY", "1s".into()),
        ("RUST_LOG", layout.rust_log.clone()),
        ("MIRAI_LOG_FORMAT", "json".into()),
    ]
    .into_iter()
    .chain(layout.identity_env(Kind::Gateway))
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn replica_name(replica: u16) -> &'static str {
    ["a", "b"][replica as usize]
}

/// One supervised process.
pub struct Instance {
    pub kind: Kind,
    pub replica: u16,
    child: Mutex<Option<Child>>,
    pid: std::sync::Mutex<Option<u32>>,
    /// In the gateways' rotation (the harness's loopback balancer reads it).
    pub in_rotation: AtomicBool,
    env: Vec<(String, String)>,
    log: PathBuf,
    binary: PathBuf,
    pub admin: String,
}

impl Instance {
    pub fn label(&self) -> String {
        format!("{}-{}", self.kind.name(), replica_name(self.replica))
    }

    pub fn pid(&self) -> Option<u32> {
        *self.pid.lock().expect("pid lock")
    }

    pub async fn start(&self) -> Result<()> {
        let mut slot = self.child.lock().await;
        if slot.is_some() {
            bail!("{} is already running", self.label());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        *self.pid.lock().expect("pid lock") = child.id();
        *slot = Some(child);
        Ok(())
    }

    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} is not running", self.label()))?;
        kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("{signal} to {}", self.label()))
    }

    /// Waits for the process to exit (after a signal), at most `limit`; SIGKILL after that.
    /// Returns how long the exit took and whether it was clean (status 0).
    pub async fn wait_exit(&self, limit: Duration) -> Result<(Duration, bool)> {
        let started = Instant::now();
        let mut slot = self.child.lock().await;
        let child = slot
            .as_mut()
            .with_context(|| format!("{} is not running", self.label()))?;
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                eprintln!(
                    "chaos: {} did not exit within {limit:?}; SIGKILL",
                    self.label()
                );
                child.start_kill()?;
                child.wait().await?
            }
        };
        *slot = None;
        *self.pid.lock().expect("pid lock") = None;
        Ok((started.elapsed(), status.success()))
    }

    /// SIGKILL and reap.
    pub async fn kill_now(&self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        self.wait_exit(Duration::from_secs(10)).await.map(|_| ())
    }

    /// Has the process exited on its own? (Reaps it if so.)
    pub async fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut slot = self.child.lock().await;
        let status = slot.as_mut()?.try_wait().ok().flatten();
        if status.is_some() {
            *slot = None;
            *self.pid.lock().expect("pid lock") = None;
        }
        status
    }

    pub async fn is_ready(&self, http: &reqwest::Client) -> bool {
        matches!(
            http.get(format!("{}/readyz", self.admin))
                .timeout(Duration::from_secs(1))
                .send()
                .await,
            Ok(r) if r.status().is_success()
        )
    }

    pub async fn wait_ready(&self, http: &reqwest::Client, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if self.is_ready(http).await {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.exited().await {
                bail!(
                    "{} exited while starting ({status}); see {}",
                    self.label(),
                    self.log.display()
                );
            }
            if started.elapsed() > limit {
                bail!(
                    "{} not ready within {limit:?}; see {}",
                    self.label(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub struct Stack {
    pub layout: Layout,
    pub instances: Vec<Arc<Instance>>,
    pub proxies: BTreeMap<Kind, Arc<Proxy>>,
    pub http: reqwest::Client,
}

impl Stack {
    pub async fn new(layout: Layout, pg_addr: std::net::SocketAddr) -> Result<Stack> {
        let log_dir = layout.run_dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let mut instances = Vec::new();
        for kind in SERVICES.into_iter().chain([Kind::Gateway]) {
            for replica in 0..2 {
                let env = match kind {
                    Kind::Gateway => gateway_env(&layout, replica),
                    _ => service_env(&layout, kind, replica),
                };
                instances.push(Arc::new(Instance {
                    kind,
                    replica,
                    child: Mutex::new(None),
                    pid: std::sync::Mutex::new(None),
                    in_rotation: AtomicBool::new(false),
                    env,
                    log: log_dir.join(format!(
                        "mirai-{}-{}.log",
                        kind.name(),
                        replica_name(replica)
                    )),
                    binary: layout.bin_dir.join(format!("mirai-{}", kind.name())),
                    admin: layout.admin_url(kind, replica),
                }));
            }
        }
        let mut proxies = BTreeMap::new();
        for kind in SERVICES {
            let listen = format!("127.0.0.1:{}", layout.db_proxy_port(kind));
            proxies.insert(kind, Proxy::start(&listen, pg_addr).await?);
        }
        Ok(Stack {
            layout,
            instances,
            proxies,
            http: reqwest::Client::new(),
        })
    }

    pub fn instance(&self, kind: Kind, replica: u16) -> &Arc<Instance> {
        self.instances
            .iter()
            .find(|i| i.kind == kind && i.replica == replica)
            .expect("every kind has two replicas")
    }

    pub fn gateways(&self) -> Vec<Arc<Instance>> {
        self.instances
            .iter()
            .filter(|i| i.kind == Kind::Gateway)
            .cloned()
            .collect()
    }

    /// Starts replica a of every service, then replica b (the first of each makes the keys,
    /// loads the sample data and migrates alone), then the gateways; waits until all are ready.
    pub async fn start_all(&self) -> Result<()> {
        let limit = Duration::from_secs(180);
        for replica in 0..2 {
            for kind in SERVICES {
                self.instance(kind, replica).start().await?;
            }
            for kind in SERVICES {
                let took = self
                    .instance(kind, replica)
                    .wait_ready(&self.http, limit)
                    .await?;
                eprintln!(
                    "chaos: {} ready after {:.1} s",
                    self.instance(kind, replica).label(),
                    took.as_secs_f64()
                );
            }
        }
        for gateway in self.gateways() {
            gateway.start().await?;
        }
        for gateway in self.gateways() {
            gateway.wait_ready(&self.http, limit).await?;
            gateway.in_rotation.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Restarts, on the same ports, anything that exited without the harness asking (a crash
    /// is a finding: logged and counted).
    pub async fn reap_crashes(&self) -> Vec<String> {
        let mut crashed = Vec::new();
        for instance in &self.instances {
            if let Some(status) = instance.exited().await {
                eprintln!(
                    "chaos: {} exited on its own ({status}); restarting",
                    instance.label()
                );
                crashed.push(format!("{} ({status})", instance.label()));
                let _ = instance.start().await;
            }
        }
        crashed
    }

    /// Polls every gateway's /readyz, as a Kubernetes endpoints controller would, and keeps
    /// the load generator's rotation to the ready ones.
    pub fn spawn_endpoint_poller(self: &Arc<Self>) {
        let stack = self.clone();
        tokio::spawn(async move {
            loop {
                for gateway in stack.gateways() {
                    let ready = gateway.pid().is_some() && gateway.is_ready(&stack.http).await;
                    gateway.in_rotation.store(ready, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    pub async fn stop_all(&self) {
        for instance in self.instances.iter().rev() {
            if instance.pid().is_some() {
                let _ = instance.signal(Signal::SIGCONT);
                let _ = instance.signal(Signal::SIGTERM);
                let _ = instance.wait_exit(Duration::from_secs(30)).await;
            }
        }
    }
}
