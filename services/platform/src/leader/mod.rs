//! Leader election: work that must run once per deployment, whatever the replica count.
//!
//! [`run_while_leader`] campaigns for a named lease, runs the work while it holds it, stops the
//! work when the lease is lost, and campaigns again; on shutdown it releases the lease so a
//! standby takes over within one retry period instead of waiting for it to expire.
//!
//! # Backends
//! [`LeaderElection::from_env`] chooses once, at startup, from `MIRAI_LEADER_BACKEND`:
//! `auto` (the default) picks Kubernetes when `POD_NAME` is set and the pod runs in a cluster
//! with a service-account token, PostgreSQL otherwise; `kubernetes`, `postgres` and `none`
//! force a choice (`none`: no election, the work runs on every replica, for a single-replica
//! deployment or tests).
//! - **Kubernetes `Lease`** (feature `leader-kube`): the chart passes `POD_NAME`/`POD_NAMESPACE`
//!   and mounts the token only for services with `leaderElection.enabled`, and grants a Role on
//!   `coordination.k8s.io` leases. The protocol is client-go's `leaderelection`: the holder
//!   writes `holderIdentity`, `acquireTime`, `renewTime`, `leaseDurationSeconds` and
//!   `leaseTransitions`; every write is a `PUT` carrying the `resourceVersion` that was read, so
//!   of two candidates racing for the same lease the API server accepts one and answers the other
//!   `409 Conflict`.
//! - **PostgreSQL advisory lock** otherwise (local runs, tests, a chart without the token):
//!   `pg_try_advisory_lock` on a dedicated session, key derived from the lease name. The lock
//!   lives exactly as long as that session, so a leader whose connection dies (crash, network,
//!   `pg_terminate_backend`) has lost it and must stop. The session's `application_name` is
//!   `mirai-leader <identity>`, which shows who leads in `pg_stat_activity`. The session sets
//!   `idle_session_timeout` to the lease duration (PostgreSQL 14+), so the server also ends the
//!   session of a leader that went silent (a partition, a frozen process) after the same time a
//!   Kubernetes standby would wait, instead of after TCP keepalive's two hours.
//!
//! # How the durations relate
//! - `lease_duration` (`MIRAI_LEADER_LEASE_DURATION`, default 15 s): how long a standby waits,
//!   counted on its own clock from the last time it saw the lease change, before it takes over
//!   from a silent holder. It is the worst-case fail-over after a crash. Counting from the
//!   moment of observation rather than from `renewTime`, as client-go does, makes the rule
//!   immune to clock skew between nodes.
//! - `renew_deadline` (`MIRAI_LEADER_RENEW_DEADLINE`, default 10 s): how long the leader keeps
//!   retrying after its last successful renewal before it gives up and stops the work. It must
//!   be shorter than `lease_duration`: a standby that saw the last renewal cannot take over before
//!   `lease_duration` has passed since it was sent, so the gap `lease_duration − renew_deadline`
//!   (5 s by default) is the time the work has to stop. When the gap runs out the work is
//!   aborted, so two leaders never run side by side as long as the work does not outlive its
//!   task (spawn nothing that ignores the token).
//! - `retry_period` (`MIRAI_LEADER_RETRY_PERIOD`, default 2 s): the interval between attempts
//!   (the leader's renewals, the standbys' polls, the PostgreSQL session checks). It must be
//!   shorter than `renew_deadline`, so a leader gets several tries before it gives up.
//!
//! The defaults are client-go's (kube-controller-manager uses the same). The PostgreSQL backend
//! has no expiry: when the leader's session ends the lock is free at once, so the leader learns
//! of the loss within one `retry_period` (its next session check) while a standby may already
//! have started; work guarded this way must tolerate an overlap of about one retry period (our
//! singleton jobs are idempotent writers). The Kubernetes lease has no such window, but neither
//! backend fences writes made by a leader that is frozen past its deadline (a paused VM).

#[cfg(feature = "leader-kube")]
mod kubernetes;
mod postgres;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng as _;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env};
use crate::telemetry::Metrics;

/// Where in-cluster clients find the service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

// === Configuration ===

/// How this process takes part in leader elections: who it is, how fast it renews, and where
/// the leases live. Read once at startup; tests build it directly.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// This candidate's name in the lease (`holderIdentity`) and in logs: `POD_NAME` in a
    /// cluster, `<service>-<random>` locally. Must differ between replicas.
    pub identity: String,
    pub timing: LeaseTiming,
    pub backend: Backend,
}

/// Where the leases live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `coordination.k8s.io/v1` Leases in `namespace` (the pod's own).
    #[cfg(feature = "leader-kube")]
    Kubernetes { namespace: String },
    /// Session-level advisory locks in the service's database.
    Postgres,
    /// No election: the work runs on every replica, from start to shutdown.
    None,
}

const BACKEND_VAR: &str = "MIRAI_LEADER_BACKEND";

/// `MIRAI_LEADER_BACKEND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BackendChoice {
    Auto,
    Kubernetes,
    Postgres,
    None,
}

impl std::str::FromStr for BackendChoice {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "kubernetes" => Ok(Self::Kubernetes),
            "postgres" => Ok(Self::Postgres),
            "none" => Ok(Self::None),
            _ => Err("must be one of auto, kubernetes, postgres, none"),
        }
    }
}

impl LeaderElection {
    /// No election (backend `none`): the work always runs. What tests and single-replica
    /// setups use.
    pub fn disabled(service_name: &str) -> Self {
        Self {
            identity: local_identity(service_name),
            timing: LeaseTiming::default(),
            backend: Backend::None,
        }
    }

    /// Reads `MIRAI_LEADER_*` and decides the backend (see the module docs); `service_name`
    /// names the local identity.
    pub fn from_env(env: &Env, service_name: &str) -> Result<Self, ConfigError> {
        Self::from_env_in(env, service_name, Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`LeaderElection::from_env`] with the service-account directory given (tests).
    pub fn from_env_in(
        env: &Env,
        service_name: &str,
        service_account_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let timing = LeaseTiming::from_env(env)?;
        let choice = env.or(BACKEND_VAR, BackendChoice::Auto)?;
        let pod: Option<String> = env.optional("POD_NAME")?;
        let backend = match choice {
            BackendChoice::Postgres => Backend::Postgres,
            BackendChoice::None => Backend::None,
            BackendChoice::Auto | BackendChoice::Kubernetes => {
                kubernetes_backend(env, service_account_dir, choice, pod.is_some())?
            }
        };
        let identity = pod.unwrap_or_else(|| local_identity(service_name));
        Ok(Self {
            identity,
            timing,
            backend,
        })
    }
}

/// `auto` or `kubernetes`: a Lease in the pod's namespace when the pod runs in a cluster with a
/// service-account token (for `auto`, also `POD_NAME`), else PostgreSQL for `auto` and an error
/// for `kubernetes`.
#[cfg(feature = "leader-kube")]
fn kubernetes_backend(
    env: &Env,
    service_account_dir: &Path,
    choice: BackendChoice,
    has_pod_name: bool,
) -> Result<Backend, ConfigError> {
    let in_cluster =
        env.get("KUBERNETES_SERVICE_HOST").is_some() && service_account_dir.join("token").is_file();
    // The pod's namespace: the chart's POD_NAMESPACE, else the service-account volume's.
    let namespace = match env.optional::<String>("POD_NAMESPACE")? {
        Some(namespace) => Some(namespace),
        None => std::fs::read_to_string(service_account_dir.join("namespace"))
            .ok()
            .map(|namespace| namespace.trim().to_owned())
            .filter(|namespace| !namespace.is_empty()),
    };
    match (choice, in_cluster, namespace) {
        (BackendChoice::Kubernetes, true, Some(namespace)) => Ok(Backend::Kubernetes { namespace }),
        (BackendChoice::Kubernetes, ..) => Err(ConfigError::Invalid {
            name: BACKEND_VAR.to_owned(),
            reason: "`kubernetes` needs an in-cluster pod: KUBERNETES_SERVICE_HOST, a \
                     service-account token and POD_NAMESPACE (or the token's namespace file)"
                .to_owned(),
        }),
        (_, true, Some(namespace)) if has_pod_name => Ok(Backend::Kubernetes { namespace }),
        _ => Ok(Backend::Postgres),
    }
}

/// Without the feature: `auto` is PostgreSQL, `kubernetes` an error.
#[cfg(not(feature = "leader-kube"))]
fn kubernetes_backend(
    _env: &Env,
    _service_account_dir: &Path,
    choice: BackendChoice,
    _has_pod_name: bool,
) -> Result<Backend, ConfigError> {
    match choice {
        BackendChoice::Kubernetes => Err(ConfigError::Invalid {
            name: BACKEND_VAR.to_owned(),
            reason: "this build has no Kubernetes backend (feature `leader-kube`)".to_owned(),
        }),
        _ => Ok(Backend::Postgres),
    }
}

/// `<service>-<random>`: distinct for every process on one machine.
fn local_identity(service_name: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{service_name}-{}", &suffix[..8])
}

/// The three durations of an election (see the module docs for how they relate). Built only
/// through [`LeaseTiming::new`], so an existing value is always consistent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// An inconsistent [`LeaseTiming`]; each variant names the duration at fault.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    /// `leaseDurationSeconds` is an integer number of seconds, at least 1.
    #[error("must be a whole number of seconds, at least 1s (Lease.spec.leaseDurationSeconds)")]
    LeaseNotWholeSeconds,
    /// The gap to the renew deadline is the time the work has to stop.
    #[error("must be longer than the renew deadline ({0:?})")]
    LeaseNotAboveDeadline(Duration),
    /// The leader must get more than one attempt before it gives up.
    #[error("must be longer than the retry period ({0:?})")]
    DeadlineNotAboveRetry(Duration),
    /// Attempts in a tight loop would hammer the API server or the database.
    #[error("must be at least 10ms")]
    RetryTooShort,
}

impl Default for LeaseTiming {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, TimingError> {
        if lease_duration.subsec_nanos() != 0 || lease_duration < Duration::from_secs(1) {
            return Err(TimingError::LeaseNotWholeSeconds);
        }
        if retry_period < Duration::from_millis(10) {
            return Err(TimingError::RetryTooShort);
        }
        if renew_deadline <= retry_period {
            return Err(TimingError::DeadlineNotAboveRetry(retry_period));
        }
        if lease_duration <= renew_deadline {
            return Err(TimingError::LeaseNotAboveDeadline(renew_deadline));
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let default = Self::default();
        let lease = env.duration_or("MIRAI_LEADER_LEASE_DURATION", default.lease_duration)?;
        let deadline = env.duration_or("MIRAI_LEADER_RENEW_DEADLINE", default.renew_deadline)?;
        let retry = env.duration_or("MIRAI_LEADER_RETRY_PERIOD", default.retry_period)?;
        Self::new(lease, deadline, retry).map_err(|error| {
            let name = match error {
                TimingError::LeaseNotWholeSeconds | TimingError::LeaseNotAboveDeadline(_) => {
                    "MIRAI_LEADER_LEASE_DURATION"
                }
                TimingError::DeadlineNotAboveRetry(_) => "MIRAI_LEADER_RENEW_DEADLINE",
                TimingError::RetryTooShort => "MIRAI_LEADER_RETRY_PERIOD",
            };
            ConfigError::Invalid {
                name: name.to_owned(),
                reason: error.to_string(),
            }
        })
    }

    /// How long a standby waits for a silent holder.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long the leader retries renewals before it stops the work.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// The interval between attempts.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// How long stopped work may take before it is aborted: a standby cannot take over before.
    pub fn stop_budget(&self) -> Duration {
        self.lease_duration - self.renew_deadline
    }
}

/// The name of one lease: a lowercase RFC 1123 subdomain (a Kubernetes object name), e.g.
/// `mirai-stock-data-feeds`. Also the `name` label of `mirai_leader` and, for PostgreSQL, the
/// source of the advisory-lock key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseName(String);

/// A lease name Kubernetes would reject.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid lease name `{name}`: {reason}")]
pub struct InvalidLeaseName {
    pub name: String,
    pub reason: &'static str,
}

impl LeaseName {
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidLeaseName> {
        let name = name.into();
        let reason = if name.is_empty() || name.len() > 253 {
            Some("must be 1 to 253 characters")
        } else if !name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }) {
            Some(
                "must be lowercase letters, digits and `-`, in dot-separated labels that start \
                 and end with a letter or digit",
            )
        } else {
            None
        };
        match reason {
            Some(reason) => Err(InvalidLeaseName { name, reason }),
            None => Ok(Self(name)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LeaseName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// === The elector ===

/// Why an [`Elector`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The in-cluster token, CA or API server address could not be read, although the
    /// environment said the pod runs in a cluster.
    #[cfg(feature = "leader-kube")]
    #[error("in-cluster Kubernetes configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The Kubernetes client could not be built from that configuration (TLS setup).
    #[cfg(feature = "leader-kube")]
    #[error("Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// One process's candidate for any number of leases. Cheap to clone; build one per process
/// (it registers the `mirai_leader` gauge).
#[derive(Clone)]
pub struct Elector {
    identity: String,
    timing: LeaseTiming,
    backend: BackendClient,
    leading: Family<LeaseLabels, Gauge>,
}

#[derive(Clone)]
enum BackendClient {
    #[cfg(feature = "leader-kube")]
    Kubernetes(kube::Client),
    // Boxed: the options are large and the enum is cloned into every elector.
    Postgres(Box<PgConnectOptions>),
    None,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    name: String,
}

impl Elector {
    /// The elector `config` asks for: on Kubernetes, a client from the in-cluster
    /// configuration; on PostgreSQL, sessions opened with `pool`'s connection options (outside
    /// the pool, so a held lock never takes one of its connections).
    pub fn new(
        config: &LeaderElection,
        pool: &PgPool,
        metrics: &Metrics,
    ) -> Result<Self, LeaderError> {
        let backend = match &config.backend {
            #[cfg(feature = "leader-kube")]
            Backend::Kubernetes { namespace } => {
                let mut kube_config = kube::Config::incluster()?;
                kube_config.default_namespace = namespace.clone();
                tracing::info!(
                    message = "Leader election on Kubernetes Leases.",
                    namespace = %namespace,
                    identity = %config.identity
                );
                BackendClient::Kubernetes(kube::Client::try_from(kube_config)?)
            }
            Backend::Postgres => {
                tracing::info!(
                    message = "Leader election on PostgreSQL advisory locks.",
                    identity = %config.identity
                );
                BackendClient::Postgres(Box::new(pool.connect_options().as_ref().clone()))
            }
            Backend::None => {
                tracing::info!(
                    message = "Leader election off: once-per-deployment work runs on this replica \
                               unconditionally.",
                    identity = %config.identity
                );
                BackendClient::None
            }
        };
        Ok(Self::build(config, backend, metrics))
    }

    /// An elector on Leases through `client`, in the client's default namespace; `config`'s
    /// backend is not consulted (tests use a client over a mocked API server).
    #[cfg(feature = "leader-kube")]
    pub fn with_kube_client(
        config: &LeaderElection,
        client: kube::Client,
        metrics: &Metrics,
    ) -> Self {
        Self::build(config, BackendClient::Kubernetes(client), metrics)
    }

    fn build(config: &LeaderElection, backend: BackendClient, metrics: &Metrics) -> Self {
        Self {
            identity: config.identity.clone(),
            timing: config.timing,
            backend,
            leading: metrics.register(
                "leader",
                "1 while this replica holds the named lease and runs its work, else 0.",
                Family::default(),
            ),
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// Runs `work` while this process holds the lease `name`, until `shutdown` fires.
///
/// Campaigns (retrying every retry period) and, once leading, calls `work` with a token that
/// fires when leadership is lost or shutdown begins; the work must return promptly then. It is
/// aborted if it has not returned within [`LeaseTiming::stop_budget`] of a loss. After a loss
/// the elector waits one lease duration (so a standby takes over first) and campaigns again; when `work` returns by itself the lease is released and the
/// elector campaigns again after a retry period (another replica may take it). On shutdown
/// the renewals go on until `work` has returned (or been aborted after the same budget), then
/// the lease is released.
///
/// Each leadership term calls `work` anew, in a task of its own, so a panic in it ends the
/// term (logged) rather than the elector. With backend `none`, `work` is called once with
/// (a clone of) `shutdown` and this returns when it does.
pub async fn run_while_leader<F, Fut>(
    elector: &Elector,
    name: &LeaseName,
    shutdown: CancellationToken,
    work: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let term = Term {
        name,
        identity: &elector.identity,
        timing: elector.timing,
        // Gauges are shared handles: this one is the family's series for `name`.
        leading: elector
            .leading
            .get_or_create(&LeaseLabels {
                name: name.to_string(),
            })
            .clone(),
    };
    term.leading.set(0);
    match &elector.backend {
        #[cfg(feature = "leader-kube")]
        BackendClient::Kubernetes(client) => {
            let lock = kubernetes::LeaseLock::new(
                client.clone(),
                name.as_str(),
                &elector.identity,
                elector.timing.lease_duration,
            );
            term.run(lock, shutdown, work).await;
        }
        BackendClient::Postgres(options) => {
            let lock = postgres::AdvisoryLock::new(
                options,
                name.as_str(),
                &elector.identity,
                elector.timing.lease_duration,
            );
            term.run(lock, shutdown, work).await;
        }
        BackendClient::None => term.run_unelected(shutdown, work).await,
    }
}

// === The protocol both backends share ===

/// What one attempt found.
#[derive(Debug)]
enum Attempt {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds a live lease (their identity, when the backend knows it).
    HeldBy(Option<String>),
}

/// An attempt that failed; `fatal` when the lock is certainly gone (a dead PostgreSQL session),
/// otherwise the next attempt may succeed (an API server hiccup, a lost race).
#[derive(Debug)]
struct Failure {
    error: String,
    fatal: bool,
}

impl Failure {
    fn transient(error: impl std::fmt::Display) -> Self {
        Self {
            error: error.to_string(),
            fatal: false,
        }
    }

    fn fatal(error: impl std::fmt::Display) -> Self {
        Self {
            error: error.to_string(),
            fatal: true,
        }
    }
}

/// A backend's lock on one lease. Every method is cancel-safe: a dropped attempt leaves the
/// lock in a state the next attempt can start from.
trait Lock: Send {
    /// Acquires the lease if it is free or expired, renews it if we hold it.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, Failure>;
    /// Gives the lease up so a standby can take it at once.
    async fn release(&mut self) -> Result<(), Failure>;
    /// Forgets a lease we lost (drops a dead session).
    fn abandon(&mut self);
    /// Closes what the lock holds open, at the end.
    async fn close(&mut self);
}

/// How a leadership term ended.
enum End {
    Lost(Loss),
    /// The work returned (or panicked).
    Returned(Result<(), tokio::task::JoinError>),
    /// Shutdown fired and the work did not return within the stop budget.
    Overdue,
}

/// Why a leader stopped leading.
enum Loss {
    /// No renewal succeeded within the renew deadline.
    Deadline,
    /// The lease is held by someone else now.
    TakenBy(Option<String>),
    /// The lock is certainly gone.
    Failed(String),
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deadline => f.write_str("no renewal succeeded within the renew deadline"),
            Self::TakenBy(Some(holder)) => write!(f, "the lease is held by {holder}"),
            Self::TakenBy(None) => f.write_str("the lease is held by another candidate"),
            Self::Failed(error) => write!(f, "the lock is gone: {error}"),
        }
    }
}

struct Term<'a> {
    name: &'a LeaseName,
    identity: &'a str,
    timing: LeaseTiming,
    leading: Gauge,
}

impl Term<'_> {
    /// Backend `none`: the work runs once, from now until it returns (at shutdown).
    async fn run_unelected<F, Fut>(&self, shutdown: CancellationToken, mut work: F)
    where
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.leading.set(1);
        if let Err(error) = tokio::spawn(work(shutdown)).await {
            tracing::error!(message = "Leader work panicked.", lease = %self.name, %error);
        }
        self.leading.set(0);
    }

    async fn run<L, F, Fut>(&self, mut lock: L, shutdown: CancellationToken, mut work: F)
    where
        L: Lock,
        F: FnMut(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (name, identity) = (self.name.as_str(), self.identity);
        while let Some(acquired) = self.campaign(&mut lock, &shutdown).await {
            self.leading.set(1);
            tracing::info!(
                message = "Leading; starting the work.",
                lease = name,
                identity
            );
            let stop = shutdown.child_token();
            let mut task = tokio::spawn(work(stop.clone()));
            // On shutdown the renewals go on while the work winds down, within the same
            // budget as after a loss, so the lease is released before the pod is killed.
            let overdue = async {
                shutdown.cancelled().await;
                sleep(self.timing.stop_budget()).await;
            };
            let end = tokio::select! {
                loss = self.hold(&mut lock, acquired) => End::Lost(loss),
                joined = &mut task => End::Returned(joined),
                () = overdue => End::Overdue,
            };
            match end {
                End::Lost(loss) => {
                    self.leading.set(0);
                    tracing::warn!(
                        message = "Lost leadership; stopping the work.",
                        lease = name,
                        identity,
                        reason = %loss
                    );
                    stop.cancel();
                    self.stop(&mut task).await;
                    lock.abandon();
                    // Step aside for a lease duration: a healthy standby takes over first
                    // instead of the replica whose lock just failed. (A standby must wait that
                    // long for a silent Kubernetes holder anyway.)
                    tokio::select! {
                        () = sleep(self.timing.lease_duration) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
                End::Returned(_) | End::Overdue => {
                    if let End::Returned(Err(error)) = &end {
                        tracing::error!(message = "Leader work panicked.", lease = name, %error);
                    }
                    if matches!(end, End::Overdue) {
                        self.abort(&mut task).await;
                    }
                    self.release(&mut lock).await;
                    self.leading.set(0);
                    if shutdown.is_cancelled() {
                        break;
                    }
                    tracing::warn!(
                        message = "Leader work returned by itself; campaigning again.",
                        lease = name
                    );
                    tokio::select! {
                        () = sleep(self.timing.retry_period) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        }
        lock.close().await;
    }

    /// Attempts every retry period (with jitter, so standbys spread out) until the lease is
    /// ours; returns when the winning attempt was sent, or `None` on shutdown.
    async fn campaign<L: Lock>(
        &self,
        lock: &mut L,
        shutdown: &CancellationToken,
    ) -> Option<Instant> {
        let name = self.name.as_str();
        let mut seen_holder: Option<Option<String>> = None;
        let mut failing = false;
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let sent = Instant::now();
            let attempt = tokio::select! {
                attempt = timeout(self.timing.renew_deadline, lock.try_acquire_or_renew()) => attempt,
                () = shutdown.cancelled() => return None,
            };
            match attempt {
                Ok(Ok(Attempt::Leading)) => return Some(sent),
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    failing = false;
                    if seen_holder.as_ref() != Some(&holder) {
                        tracing::info!(
                            message = "Lease held by another candidate; standing by.",
                            lease = name,
                            holder = holder.as_deref().unwrap_or("unknown")
                        );
                        seen_holder = Some(holder);
                    }
                }
                Ok(Err(failure)) => {
                    self.campaign_failed(&mut failing, &failure.error);
                    if failure.fatal {
                        lock.abandon();
                    }
                }
                Err(_) => self.campaign_failed(&mut failing, "the attempt timed out"),
            }
            let jitter = rand::rng().random_range(1.0..1.2);
            tokio::select! {
                () = sleep(self.timing.retry_period.mul_f64(jitter)) => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    fn campaign_failed(&self, failing: &mut bool, error: &str) {
        // The first failure of a streak at warn, the rest at debug: a missing RBAC rule would
        // otherwise log every retry period.
        if *failing {
            tracing::debug!(message = "Leader election attempt failed.", lease = %self.name, error);
        } else {
            tracing::warn!(message = "Leader election attempt failed; retrying.", lease = %self.name, error);
        }
        *failing = true;
    }

    /// Renews every retry period; returns when leadership is lost. A renewal counts from the
    /// moment it was sent, and each attempt may only use the time left before the deadline.
    async fn hold<L: Lock>(&self, lock: &mut L, acquired: Instant) -> Loss {
        let mut last = acquired;
        loop {
            let deadline = last + self.timing.renew_deadline;
            sleep_until(last + self.timing.retry_period).await;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    return Loss::Deadline;
                }
                match timeout(deadline - now, lock.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Leading)) => {
                        last = now;
                        break;
                    }
                    Ok(Ok(Attempt::HeldBy(holder))) => return Loss::TakenBy(holder),
                    Ok(Err(failure)) if failure.fatal => return Loss::Failed(failure.error),
                    Ok(Err(failure)) => {
                        tracing::warn!(
                            message = "Lease renewal failed; retrying until the deadline.",
                            lease = %self.name,
                            error = failure.error
                        );
                        sleep_until(deadline.min(Instant::now() + self.timing.retry_period)).await;
                    }
                    Err(_) => return Loss::Deadline,
                }
            }
        }
    }

    /// Waits for stopped work, aborting it when the stop budget runs out.
    async fn stop(&self, task: &mut tokio::task::JoinHandle<()>) {
        let budget = self.timing.stop_budget();
        match timeout(budget, &mut *task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(message = "Leader work panicked.", lease = %self.name, %error);
            }
            Err(_) => self.abort(task).await,
        }
    }

    async fn abort(&self, task: &mut tokio::task::JoinHandle<()>) {
        tracing::error!(
            message = "Leader work ignored its stop token; aborting it.",
            lease = %self.name,
            budget_ms = self.timing.stop_budget().as_millis() as u64
        );
        task.abort();
        let _ = (&mut *task).await;
    }

    async fn release<L: Lock>(&self, lock: &mut L) {
        match timeout(self.timing.renew_deadline, lock.release()).await {
            Ok(Ok(())) => tracing::info!(
                message = "Released leadership.",
                lease = %self.name,
                identity = self.identity
            ),
            Ok(Err(failure)) => tracing::warn!(
                message = "Releasing the lease failed; it expires on its own.",
                lease = %self.name,
                error = failure.error
            ),
            Err(_) => {
                tracing::warn!(
                    message = "Releasing the lease timed out; it expires on its own.",
                    lease = %self.name
                );
                lock.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_are_client_go_s_and_consistent() {
        let config =
            LeaderElection::from_env_in(&env(&[]), "mirai-test", Path::new("/nowhere")).unwrap();
        assert_eq!(config.backend, Backend::Postgres);
        assert_eq!(config.timing, LeaseTiming::default());
        assert_eq!(config.timing.stop_budget(), Duration::from_secs(5));
        assert!(
            config.identity.starts_with("mirai-test-"),
            "{}",
            config.identity
        );
        let other =
            LeaderElection::from_env_in(&env(&[]), "mirai-test", Path::new("/nowhere")).unwrap();
        assert_ne!(
            config.identity, other.identity,
            "local identities must differ"
        );
    }

    #[test]
    fn inconsistent_durations_name_the_variable() {
        let cases = [
            (
                [("MIRAI_LEADER_LEASE_DURATION", "10s")],
                "MIRAI_LEADER_LEASE_DURATION is invalid: must be longer than the renew deadline",
            ),
            (
                [("MIRAI_LEADER_LEASE_DURATION", "15500ms")],
                "MIRAI_LEADER_LEASE_DURATION is invalid: must be a whole number of seconds",
            ),
            (
                [("MIRAI_LEADER_RENEW_DEADLINE", "2s")],
                "MIRAI_LEADER_RENEW_DEADLINE is invalid: must be longer than the retry period",
            ),
            (
                [("MIRAI_LEADER_RETRY_PERIOD", "1ms")],
                "MIRAI_LEADER_RETRY_PERIOD is invalid: must be at least 10ms",
            ),
            (
                [("MIRAI_LEADER_RETRY_PERIOD", "often")],
                "MIRAI_LEADER_RETRY_PERIOD is invalid",
            ),
        ];
        for (pairs, expected) in cases {
            let error = LeaderElection::from_env_in(&env(&pairs), "s", Path::new("/nowhere"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with(expected), "{error}");
        }
    }

    #[test]
    fn kubernetes_is_chosen_only_with_pod_env_and_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let pod = [
            ("POD_NAME", "mirai-stock-data-7d9f-abcde"),
            ("POD_NAMESPACE", "mirai"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ];
        // No token mounted (the chart mounts one only with leaderElection.enabled).
        let config = LeaderElection::from_env_in(&env(&pod), "s", dir.path()).unwrap();
        assert_eq!(config.backend, Backend::Postgres);
        assert_eq!(config.identity, "mirai-stock-data-7d9f-abcde");

        std::fs::write(dir.path().join("token"), "t").unwrap();
        let config = LeaderElection::from_env_in(&env(&pod), "s", dir.path()).unwrap();
        #[cfg(feature = "leader-kube")]
        assert_eq!(
            config.backend,
            Backend::Kubernetes {
                namespace: "mirai".into()
            }
        );
        #[cfg(not(feature = "leader-kube"))]
        assert_eq!(config.backend, Backend::Postgres);

        // Outside a cluster (no API server address) the token alone does not count.
        let config = LeaderElection::from_env_in(&env(&pod[..2]), "s", dir.path()).unwrap();
        assert_eq!(config.backend, Backend::Postgres);
    }

    #[test]
    fn the_backend_can_be_forced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        std::fs::write(dir.path().join("namespace"), "mirai-ns\n").unwrap();
        let in_cluster = [
            ("POD_NAME", "mirai-stock-data-7d9f-abcde"),
            ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ];
        let choose = |backend: &str, pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            pairs.push(("MIRAI_LEADER_BACKEND", backend));
            LeaderElection::from_env_in(&env(&pairs), "s", dir.path())
        };
        assert_eq!(choose("none", &in_cluster).unwrap().backend, Backend::None);
        assert_eq!(
            choose("postgres", &in_cluster).unwrap().backend,
            Backend::Postgres
        );
        let error = choose("etcd", &[]).unwrap_err().to_string();
        assert!(
            error.starts_with("MIRAI_LEADER_BACKEND is invalid: must be one of"),
            "{error}"
        );
        // Forced Kubernetes outside a cluster is an error, not a silent fallback.
        let error = choose("kubernetes", &in_cluster[..1])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("MIRAI_LEADER_BACKEND is invalid"),
            "{error}"
        );
        // In a cluster the namespace comes from the service-account volume when POD_NAMESPACE
        // is not set.
        let forced = choose("kubernetes", &in_cluster);
        #[cfg(feature = "leader-kube")]
        assert_eq!(
            forced.unwrap().backend,
            Backend::Kubernetes {
                namespace: "mirai-ns".into()
            }
        );
        #[cfg(not(feature = "leader-kube"))]
        assert!(forced.unwrap_err().to_string().contains("leader-kube"));
    }

    #[test]
    fn lease_names_are_kubernetes_object_names() {
        for good in ["mirai-stock-data-feeds", "a", "feeds.stock-data", "x1"] {
            assert_eq!(LeaseName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "Feeds",
            "-feeds",
            "feeds-",
            "a..b",
            "feeds_live",
            "feeds live",
            &"a".repeat(254),
            &format!("{}.b", "a".repeat(64)),
        ] {
            assert!(LeaseName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn timing_rejects_each_inconsistency() {
        let s = Duration::from_secs;
        assert!(LeaseTiming::new(s(15), s(10), s(2)).is_ok());
        assert_eq!(
            LeaseTiming::new(s(10), s(10), s(2)),
            Err(TimingError::LeaseNotAboveDeadline(s(10)))
        );
        assert_eq!(
            LeaseTiming::new(s(15), s(2), s(2)),
            Err(TimingError::DeadlineNotAboveRetry(s(2)))
        );
        assert_eq!(
            LeaseTiming::new(Duration::ZERO, s(0), s(0)),
            Err(TimingError::LeaseNotWholeSeconds)
        );
    }
}
