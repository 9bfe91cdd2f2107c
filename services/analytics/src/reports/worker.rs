//! The report worker: claims queued jobs, generates them within the timeout, stores the files,
//! and fails jobs that overran (here or in a replica that vanished).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::build::{Sources, build};
use super::render::render;
use super::spec::Spec;
use crate::config::ReportSettings;
use crate::store::reports::{self, File, Job};

/// Runs the report workers and the overdue sweeper.
#[derive(Clone)]
pub struct Worker {
    pub sources: Sources,
    pub settings: ReportSettings,
    /// Signalled when this replica queues a job, so it starts without waiting for the poll.
    pub wake: Arc<Notify>,
}

impl Worker {
    /// Runs `settings.workers` job loops and the sweeper until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.settings.workers {
            tasks.spawn(self.clone().jobs(stop.clone()));
        }
        tasks.spawn(self.clone().sweep(stop.clone()));
        while tasks.join_next().await.is_some() {}
    }

    async fn idle(&self, stop: &CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = self.wake.notified() => {}
            () = tokio::time::sleep(self.settings.poll) => {}
        }
    }

    async fn jobs(self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match reports::claim(&self.sources.pool, self.settings.timeout).await {
                Ok(Some(job)) => self.run_job(job, &stop).await,
                Ok(None) => self.idle(&stop).await,
                Err(error) => {
                    tracing::warn!(message = "Claiming a report job failed.", %error);
                    self.idle(&stop).await;
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(report_id = %job.id, subject = job.spec.subject.kind()))]
    async fn run_job(&self, job: Job, stop: &CancellationToken) {
        let pool = &self.sources.pool;
        let timeout = self.settings.timeout;
        let started = std::time::Instant::now();
        let outcome = tokio::select! {
            () = stop.cancelled() => {
                if let Err(error) = reports::requeue(pool, job.id).await {
                    tracing::warn!(message = "Requeueing a report job failed.", %error);
                }
                return;
            }
            outcome = tokio::time::timeout(timeout, generate(&self.sources, &job.spec)) => outcome,
        };
        let retention = self.settings.retention;
        let stored = match outcome {
            Ok(Ok(files)) => reports::succeed(pool, &job, &files, retention).await,
            Ok(Err(reason)) => reports::fail(pool, &job, &reason, retention).await,
            Err(_) => {
                let reason = format!(
                    "timed out: the report was not finished within {}",
                    humantime_secs(timeout)
                );
                reports::fail(pool, &job, &reason, retention).await
            }
        };
        match stored {
            Ok(true) => tracing::info!(
                message = "Report job finished.",
                elapsed_ms = started.elapsed().as_millis() as u64
            ),
            Ok(false) => {
                tracing::info!(message = "Report job was failed by the sweeper meanwhile.")
            }
            Err(error) => {
                // The job stays RUNNING; the sweeper fails it at its deadline.
                tracing::warn!(message = "Storing a report job's outcome failed.", %error);
            }
        }
    }

    async fn sweep(self, stop: CancellationToken) {
        let every = self.settings.poll.max(Duration::from_millis(100));
        while !stop.is_cancelled() {
            match reports::fail_overdue(&self.sources.pool, self.settings.retention).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(message = "Overdue report jobs failed.", jobs = n),
                Err(error) => {
                    tracing::warn!(message = "Sweeping overdue report jobs failed.", %error)
                }
            }
            match reports::delete_expired(&self.sources.pool).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(message = "Expired report jobs deleted.", jobs = n),
                Err(error) => {
                    tracing::warn!(message = "Deleting expired report jobs failed.", %error)
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

fn humantime_secs(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs())
    }
}

/// The files of `spec`: content from the read model (and prediction), rendered off the async
/// threads (charts are CPU-bound).
pub async fn generate(sources: &Sources, spec: &Spec) -> Result<Vec<File>, String> {
    let report = build(sources, spec).await.map_err(|e| e.to_string())?;
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || {
        spec.formats
            .iter()
            .map(|&format| {
                Ok(File {
                    format,
                    file_name: spec.file_name(format),
                    content: render(&report, format).map_err(|e| e.to_string())?,
                })
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .await
    .map_err(|e| format!("rendering stopped: {e}"))?
}
