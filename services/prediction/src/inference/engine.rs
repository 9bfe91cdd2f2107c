//! The micro-batching queue and its worker pool, one per served version.
//!
//! Callers submit one window each; worker threads (dedicated OS threads, each holding its own
//! spawned tract states, because a run is CPU-bound and must not block the async runtime) take
//! turns collecting a batch: the collecting worker waits for the first window, then keeps
//! taking windows until the batch holds `max_batch` or `max_delay` has passed since the first
//! one was queued, releases the queue to the next worker and runs the batch through the plan
//! schedule. Under load, windows that queue while a batch runs form the next batch without
//! any waiting, so concurrent requests share runs even with a zero delay. A full queue refuses
//! new windows at once (the caller answers `RESOURCE_EXHAUSTED`) instead of growing without
//! bound.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::oneshot;

use super::plan::Plans;
use crate::domain::model_ref::ModelRef;
use crate::metrics::{Metrics, VersionLabels};

/// Queue and pool tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most windows in one batch (`MIRAI_BATCH_MAX_SIZE`).
    pub max_batch: usize,
    /// Longest a window waits for others to join its batch (`MIRAI_BATCH_MAX_DELAY`).
    pub max_delay: Duration,
    /// Windows waiting at most (`MIRAI_INFERENCE_QUEUE`).
    pub queue: usize,
    /// Worker threads per version (`MIRAI_INFERENCE_WORKERS`).
    pub workers: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_delay: Duration::from_micros(200),
            queue: 4096,
            workers: 2,
        }
    }
}

/// Why a window was not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InferError {
    /// The queue is full: the version is overloaded; retry later.
    #[error("the inference queue of {0} is full")]
    QueueFull(ModelRef),
    /// The version was unloaded (replaced or retired) before the window ran.
    #[error("{0} stopped serving")]
    Stopped(ModelRef),
    /// tract failed on the batch (a defect: verified graphs run).
    #[error("inference failed: {0}")]
    Failed(String),
}

/// A window's result: the model's outputs and when the batch it ran in finished.
#[derive(Debug, Clone)]
pub struct Inferred {
    pub outputs: Vec<f32>,
    /// Windows in the batch this one ran in.
    pub batch: usize,
}

struct Job {
    input: Vec<f32>,
    reply: oneshot::Sender<Result<Inferred, InferError>>,
    queued: Instant,
}

/// Per-version inference metrics.
#[derive(Clone)]
pub struct EngineMetrics {
    batch_size: Histogram,
    run_seconds: Histogram,
    queue_seconds: Histogram,
    queued: Gauge,
}

impl EngineMetrics {
    pub fn of(metrics: &Metrics, model: &ModelRef) -> Self {
        let labels = VersionLabels::of(model);
        Self {
            batch_size: metrics.batch_size.get_or_create(&labels).clone(),
            run_seconds: metrics.inference_seconds.get_or_create(&labels).clone(),
            queue_seconds: metrics.queue_seconds.get_or_create(&labels).clone(),
            queued: metrics.queued.get_or_create(&labels).clone(),
        }
    }
}

/// One version's queue and workers. Dropping it stops the workers once the queue drains.
pub struct Engine {
    model: ModelRef,
    plans: Arc<Plans>,
    queue: SyncSender<Job>,
    metrics: EngineMetrics,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts `settings.workers` threads serving `plans`.
    pub fn start(
        model: ModelRef,
        plans: Arc<Plans>,
        settings: BatchSettings,
        metrics: EngineMetrics,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::sync_channel::<Job>(settings.queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..settings.workers.max(1) {
            let (plans, receiver, metrics) = (plans.clone(), receiver.clone(), metrics.clone());
            let name = format!("tract-{}-{index}", model.version());
            let model = model.clone();
            std::thread::Builder::new().name(name).spawn(move || {
                worker(model, plans, receiver, settings, metrics);
            })?;
        }
        Ok(Self {
            model,
            plans,
            queue,
            metrics,
        })
    }

    pub fn plans(&self) -> &Arc<Plans> {
        &self.plans
    }

    /// Queues one window (`window × features` values) and waits for its outputs.
    pub async fn infer(&self, input: Vec<f32>) -> Result<Inferred, InferError> {
        let receiver = self.submit(input)?;
        receiver
            .await
            .unwrap_or_else(|_| Err(InferError::Stopped(self.model.clone())))
    }

    /// Queues one window without waiting.
    pub fn submit(
        &self,
        input: Vec<f32>,
    ) -> Result<oneshot::Receiver<Result<Inferred, InferError>>, InferError> {
        if input.len() != self.plans.window_len() {
            return Err(InferError::Failed(format!(
                "window holds {} values, expected {}",
                input.len(),
                self.plans.window_len()
            )));
        }
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            input,
            reply,
            queued: Instant::now(),
        };
        match self.queue.try_send(job) {
            Ok(()) => {
                self.metrics.queued.inc();
                Ok(receiver)
            }
            Err(TrySendError::Full(_)) => Err(InferError::QueueFull(self.model.clone())),
            Err(TrySendError::Disconnected(_)) => Err(InferError::Stopped(self.model.clone())),
        }
    }
}

fn worker(
    model: ModelRef,
    plans: Arc<Plans>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    settings: BatchSettings,
    metrics: EngineMetrics,
) {
    let mut states = match plans.spawn_states() {
        Ok(states) => states,
        Err(error) => {
            tracing::error!(message = "Inference worker could not start.", model = %model, %error);
            return;
        }
    };
    let per = plans.window_len();
    let outputs = plans.outputs();
    let mut input = Vec::new();
    loop {
        let batch = {
            let queue = receiver.lock().unwrap_or_else(PoisonError::into_inner);
            match collect(&queue, &settings) {
                Some(batch) => batch,
                None => break,
            }
        };
        metrics.queued.dec_by(batch.len() as i64);
        let started = Instant::now();
        for job in &batch {
            metrics
                .queue_seconds
                .observe(started.duration_since(job.queued).as_secs_f64());
        }
        input.clear();
        for job in &batch {
            input.extend_from_slice(&job.input);
        }
        let n = batch.len();
        let result = plans.run(&mut states, &input[..n * per], n);
        metrics.run_seconds.observe(started.elapsed().as_secs_f64());
        metrics.batch_size.observe(n as f64);
        match result {
            Ok(values) => {
                for (i, job) in batch.into_iter().enumerate() {
                    let _ = job.reply.send(Ok(Inferred {
                        outputs: values[i * outputs..(i + 1) * outputs].to_vec(),
                        batch: n,
                    }));
                }
            }
            Err(error) => {
                tracing::error!(message = "Inference failed.", model = %model, %error, batch = n);
                for job in batch {
                    let _ = job.reply.send(Err(InferError::Failed(error.to_string())));
                }
            }
        }
    }
    tracing::debug!(message = "Inference worker stopped.", model = %model);
}

/// Waits for a first job, then gathers more until the batch is full or the first job has
/// waited `max_delay`. `None` when the engine was dropped and the queue is empty.
fn collect(queue: &mpsc::Receiver<Job>, settings: &BatchSettings) -> Option<Vec<Job>> {
    let first = queue.recv().ok()?;
    let deadline = first.queued + settings.max_delay;
    let mut batch = vec![first];
    while batch.len() < settings.max_batch {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match queue.recv_timeout(deadline - now) {
                    Ok(job) => batch.push(job),
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
    }
    Some(batch)
}
