//! Prometheus metrics of the prediction service, per model version, registered once on the
//! application's registry (all names get the `mirai_` prefix; counters end in `_total`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::domain::model_ref::ModelRef;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub model: String,
    pub version: String,
}

impl VersionLabels {
    pub fn of(model: &ModelRef) -> Self {
        Self {
            model: model.name().to_owned(),
            version: model.version().to_owned(),
        }
    }
}

/// A forecast's origin: `request` (Predict/PredictMany), `shadow`, or `event` (the bar loop).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForecastLabels {
    pub model: String,
    pub version: String,
    pub origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub model: String,
    pub version: String,
    pub origin: &'static str,
    /// `bars`, `queue_full`, `inference`, `timeout`, `store`.
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScoreLabels {
    pub model: String,
    pub version: String,
    /// `mae`, `naive_mae`, `mase`, `rmse`, `pinball`, `baseline_pinball`, `coverage`,
    /// `hit_rate`, `count`.
    pub metric: &'static str,
}

/// Every metric family of the service.
#[derive(Clone)]
pub struct Metrics {
    pub forecasts: Family<ForecastLabels, Counter>,
    pub latency: Family<ForecastLabels, Histogram>,
    pub errors: Family<ErrorLabels, Counter>,
    pub batch_size: Family<VersionLabels, Histogram>,
    pub inference_seconds: Family<VersionLabels, Histogram>,
    pub queue_seconds: Family<VersionLabels, Histogram>,
    pub queued: Family<VersionLabels, Gauge>,
    pub ready: Family<VersionLabels, Gauge>,
    pub scoreboard: Family<ScoreLabels, Gauge<f64, AtomicU64>>,
    /// The process's `mirai_cache_requests_total`; this service's caches are `bars` and
    /// `forecast`.
    pub cache: mirai_platform::telemetry::CacheMetrics,
    pub shadows_dropped: Counter,
    pub artifact_refusals: Family<VersionLabels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mirai_platform::telemetry::Metrics) -> Self {
        Self {
            forecasts: registry.register(
                "prediction_forecasts",
                "Forecasts produced, by version and origin (request, shadow, event).",
                Family::default(),
            ),
            latency: registry.register(
                "prediction_latency_seconds",
                "Time to produce a forecast (bars, features, queueing, inference), by version and origin.",
                Family::new_with_constructor(|| Histogram::new(exponential_buckets(2e-5, 2.0, 18))),
            ),
            errors: registry.register(
                "prediction_errors",
                "Forecasts that failed, by version, origin and kind.",
                Family::default(),
            ),
            batch_size: registry.register(
                "inference_batch_size",
                "Windows per inference batch, by version.",
                Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 10))),
            ),
            inference_seconds: registry.register(
                "inference_run_seconds",
                "Time of one batch through the tract plans, by version.",
                Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-5, 2.0, 18))),
            ),
            queue_seconds: registry.register(
                "inference_queue_seconds",
                "Time a window waited in the micro-batching queue, by version.",
                Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-6, 2.0, 20))),
            ),
            queued: registry.register(
                "inference_queued",
                "Windows waiting in the micro-batching queue, by version.",
                Family::default(),
            ),
            ready: registry.register(
                "model_ready",
                "1 while a version is loaded, verified and warmed up.",
                Family::default(),
            ),
            scoreboard: registry.register(
                "model_scoreboard",
                "Rolling live accuracy of a version (the default scoreboard window), by metric.",
                Family::default(),
            ),
            cache: mirai_platform::telemetry::CacheMetrics::register(registry),
            shadows_dropped: registry.register(
                "prediction_shadows_dropped",
                "Shadow runs skipped because too many were already in flight.",
                Counter::default(),
            ),
            artifact_refusals: registry.register(
                "model_artifact_refusals",
                "Artifacts refused at load or reload (checksum, shape, golden mismatch).",
                Family::default(),
            ),
        }
    }

    pub fn forecast(&self, model: &ModelRef, origin: &'static str, seconds: f64) {
        let labels = ForecastLabels {
            model: model.name().to_owned(),
            version: model.version().to_owned(),
            origin,
        };
        self.forecasts.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    pub fn error(&self, model: &ModelRef, origin: &'static str, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                model: model.name().to_owned(),
                version: model.version().to_owned(),
                origin,
                kind,
            })
            .inc();
    }

    pub fn cache(&self, cache: &'static str, hit: bool) {
        self.cache.record(cache, hit);
    }

    pub fn score(&self, model: &ModelRef, metric: &'static str, value: f64) {
        self.scoreboard
            .get_or_create(&ScoreLabels {
                model: model.name().to_owned(),
                version: model.version().to_owned(),
                metric,
            })
            .set(value);
    }
}
