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

//!
//! # Layout
//! `config` (identity, timing and backend from the environment; lease names), this module (the
//! [`Elector`] and [`run_while_leader`]), `term` (the protocol both backends share: campaign,
//! hold, stop, release), and one module per backend (`kubernetes`, `postgres`).

mod config;
#[cfg(feature = "leader-kube")]
mod kubernetes;
mod postgres;
mod term;

use std::future::Future;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

pub use self::config::{
    Backend, InvalidLeaseName, LeaderElection, LeaseName, LeaseTiming, TimingError,
};
use self::term::{Attempt, Failure, Lock, Term};
use crate::telemetry::Metrics;

/// Where in-cluster clients find the service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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
                elector.timing.lease_duration(),
            );
            term.run(lock, shutdown, work).await;
        }
        BackendClient::Postgres(options) => {
            let lock = postgres::AdvisoryLock::new(
                options,
                name.as_str(),
                &elector.identity,
                elector.timing.lease_duration(),
            );
            term.run(lock, shutdown, work).await;
        }
        BackendClient::None => term.run_unelected(shutdown, work).await,
    }
}
