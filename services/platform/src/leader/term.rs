//! The protocol both backends share: a [`Lock`] on one lease, and a [`Term`] that campaigns,
//! holds the lease while the work runs, stops the work when the lease is lost, and releases it.

use std::future::Future;

use prometheus_client::metrics::gauge::Gauge;
use rand::Rng as _;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use super::{LeaseName, LeaseTiming};

/// What one attempt found.
#[derive(Debug)]
pub(super) enum Attempt {
    /// We hold the lease (acquired or renewed).
    Leading,
    /// Someone else holds a live lease (their identity, when the backend knows it).
    HeldBy(Option<String>),
}

/// An attempt that failed; `fatal` when the lock is certainly gone (a dead PostgreSQL session),
/// otherwise the next attempt may succeed (an API server hiccup, a lost race).
#[derive(Debug)]
pub(super) struct Failure {
    error: String,
    fatal: bool,
}

impl Failure {
    pub(super) fn transient(error: impl std::fmt::Display) -> Self {
        Self {
            error: error.to_string(),
            fatal: false,
        }
    }

    pub(super) fn fatal(error: impl std::fmt::Display) -> Self {
        Self {
            error: error.to_string(),
            fatal: true,
        }
    }
}

/// A backend's lock on one lease. Every method is cancel-safe: a dropped attempt leaves the
/// lock in a state the next attempt can start from.
pub(super) trait Lock: Send {
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

/// One lease's campaigns and terms for one candidate.
pub(super) struct Term<'a> {
    pub(super) name: &'a LeaseName,
    pub(super) identity: &'a str,
    pub(super) timing: LeaseTiming,
    pub(super) leading: Gauge,
}

impl Term<'_> {
    /// Backend `none`: the work runs once, from now until it returns (at shutdown).
    pub(super) async fn run_unelected<F, Fut>(&self, shutdown: CancellationToken, mut work: F)
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

    pub(super) async fn run<L, F, Fut>(&self, mut lock: L, shutdown: CancellationToken, mut work: F)
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
                        () = sleep(self.timing.lease_duration()) => {}
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
                        () = sleep(self.timing.retry_period()) => {}
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
                attempt = timeout(self.timing.renew_deadline(), lock.try_acquire_or_renew()) => attempt,
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
                () = sleep(self.timing.retry_period().mul_f64(jitter)) => {}
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
            let deadline = last + self.timing.renew_deadline();
            sleep_until(last + self.timing.retry_period()).await;
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
                        sleep_until(deadline.min(Instant::now() + self.timing.retry_period()))
                            .await;
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
        match timeout(self.timing.renew_deadline(), lock.release()).await {
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
