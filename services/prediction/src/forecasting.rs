//! Producing forecasts: route the caller to a version, take the symbol's cached bars, queue
//! the window (or reuse the version's forecast for the same origin bar), turn quantiles into
//! prices and P(up), store the prediction, and mirror the request to the shadow versions off
//! the request path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use mirai_platform::wire;
use mirai_proto::prediction::v1 as pb;
use mirai_proto::stock::v1 as stock;
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::bars::{BarSource, Snapshot};
use crate::domain::forecast::{self, PriceForecast};
use crate::domain::model_ref::ModelRef;
use crate::domain::symbol::Symbol;
use crate::domain::traffic::Role;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::models::{ModelSet, Served};
use crate::store::predictions::{Origin, PredictionLog, Stored};
use crate::store::traffic::TrafficState;

/// One forecast as produced.
#[derive(Debug, Clone)]
pub struct Made {
    pub id: Uuid,
    pub model: ModelRef,
    pub role: Role,
    pub symbol: Symbol,
    /// `stock::Timeframe` (always daily today).
    pub timeframe: i32,
    /// `stock::Adjustment` of the input bars.
    pub adjustment: i32,
    /// Start of the last input bar.
    pub as_of: DateTime<Utc>,
    /// Estimated start of the forecast bar ([`forecast::next_session`]).
    pub target_start: DateTime<Utc>,
    pub last_close: f64,
    pub levels: Arc<[f64]>,
    /// Quantiles of the next-bar log return, one per level.
    pub log_returns: Vec<f64>,
    pub lower_level: f64,
    pub upper_level: f64,
    pub prices: PriceForecast,
    pub latency: Duration,
    pub created_at: DateTime<Utc>,
}

pub fn role_to_wire(role: Role) -> pb::ModelRole {
    match role {
        Role::Champion => pb::ModelRole::Champion,
        Role::Challenger => pb::ModelRole::Challenger,
        Role::Shadow => pb::ModelRole::Shadow,
        Role::Idle => pb::ModelRole::Idle,
    }
}

/// A duration on the wire.
pub fn duration_to_wire(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

impl Made {
    pub fn to_wire(&self) -> pb::Forecast {
        pb::Forecast {
            prediction_id: self.id.to_string(),
            symbol: self.symbol.as_str().to_owned(),
            timeframe: self.timeframe,
            model: Some(self.model.to_wire()),
            role: role_to_wire(self.role).into(),
            as_of: Some(wire::timestamp(self.as_of)),
            target_start: Some(wire::timestamp(self.target_start)),
            last_close: self.last_close,
            point: self.prices.point,
            lower: self.prices.lower,
            upper: self.prices.upper,
            interval_level: interval_level(self.lower_level, self.upper_level),
            p_up: self.prices.p_up,
            quantiles: self
                .levels
                .iter()
                .zip(&self.prices.prices)
                .map(|(level, price)| pb::QuantileValue {
                    level: *level,
                    price: *price,
                })
                .collect(),
            latency: Some(duration_to_wire(self.latency)),
            adjustment: self.adjustment,
        }
    }
}

/// Nominal coverage of [lower, upper], rounded like the card (0.95 − 0.05 → 0.9).
pub fn interval_level(lower: f64, upper: f64) -> f64 {
    ((upper - lower) * 1e10).round() / 1e10
}

/// Tuning of the request path.
#[derive(Debug, Clone, Copy)]
pub struct PredictorSettings {
    /// Shadow runs in flight at most (`MIRAI_SHADOW_CONCURRENCY`).
    pub shadow_concurrency: usize,
    /// A shadow run taking longer is abandoned (`MIRAI_SHADOW_TIMEOUT`).
    pub shadow_timeout: Duration,
    /// Reuse a version's forecast while the symbol's latest bar is unchanged
    /// (`MIRAI_FORECAST_CACHE`).
    pub forecast_cache: bool,
}

/// The request path and the bar loop's forecasting.
pub struct Predictor {
    pub models: Arc<ModelSet>,
    pub traffic: Arc<TrafficState>,
    pub bars: Arc<BarSource>,
    pub log: PredictionLog,
    pub metrics: Metrics,
    shadows: Arc<Semaphore>,
    shadow_timeout: Duration,
    forecast_cache: bool,
}

impl Predictor {
    pub fn new(
        models: Arc<ModelSet>,
        traffic: Arc<TrafficState>,
        bars: Arc<BarSource>,
        log: PredictionLog,
        metrics: Metrics,
        settings: PredictorSettings,
    ) -> Self {
        Self {
            models,
            traffic,
            bars,
            log,
            metrics,
            shadows: Arc::new(Semaphore::new(settings.shadow_concurrency.max(1))),
            shadow_timeout: settings.shadow_timeout,
            forecast_cache: settings.forecast_cache,
        }
    }

    /// Forecasts of `served` for every snapshot, sharing inference batches. Latency counts
    /// from `started`.
    pub async fn forecast_many(
        &self,
        served: &Arc<Served>,
        role: Role,
        snapshots: &[Snapshot],
        origin: Origin,
        started: Instant,
    ) -> Vec<Result<Made>> {
        let model = served.model();
        let window = served.window();
        enum Step {
            Ready(Arc<[f32]>),
            Waiting(
                tokio::sync::oneshot::Receiver<
                    std::result::Result<
                        crate::inference::engine::Inferred,
                        crate::inference::engine::InferError,
                    >,
                >,
            ),
            Failed(Error),
        }
        let mut steps = Vec::with_capacity(snapshots.len());
        for snapshot in snapshots {
            let Some(as_of) = snapshot.as_of() else {
                steps.push(Step::Failed(Error::NotFound(format!(
                    "no daily bars for {}",
                    snapshot.symbol
                ))));
                continue;
            };
            if !snapshot.series.has_window(window) {
                self.metrics.error(model, origin.as_str(), "bars");
                steps.push(Step::Failed(Error::FailedPrecondition(format!(
                    "{} has {} daily bars; {model} needs {} (window {window} + 1)",
                    snapshot.symbol,
                    snapshot.series.len(),
                    window + 1
                ))));
                continue;
            }
            if self.forecast_cache
                && let Some(outputs) = served.cached(snapshot.symbol.as_str(), as_of)
            {
                self.metrics.cache("forecast", true);
                steps.push(Step::Ready(outputs));
                continue;
            }
            if self.forecast_cache {
                self.metrics.cache("forecast", false);
            }
            let mut input = Vec::with_capacity(window * crate::domain::features::N_FEATURES);
            snapshot.series.window_into(window, &mut input);
            match served.engine.submit(input) {
                Ok(receiver) => steps.push(Step::Waiting(receiver)),
                Err(error) => {
                    self.metrics.error(model, origin.as_str(), "queue_full");
                    steps.push(Step::Failed(error.into()));
                }
            }
        }
        let mut out = Vec::with_capacity(snapshots.len());
        for (snapshot, step) in snapshots.iter().zip(steps) {
            let outputs = match step {
                Step::Ready(outputs) => outputs,
                Step::Failed(error) => {
                    out.push(Err(error));
                    continue;
                }
                Step::Waiting(receiver) => match receiver.await {
                    Ok(Ok(inferred)) => {
                        let outputs: Arc<[f32]> = inferred.outputs.into();
                        if let Some(as_of) = snapshot.as_of() {
                            served.remember(snapshot.symbol.as_str(), as_of, outputs.clone());
                        }
                        outputs
                    }
                    Ok(Err(error)) => {
                        self.metrics.error(model, origin.as_str(), "inference");
                        out.push(Err(error.into()));
                        continue;
                    }
                    Err(_) => {
                        self.metrics.error(model, origin.as_str(), "inference");
                        out.push(Err(Error::Unavailable(format!("{model} stopped serving"))));
                        continue;
                    }
                },
            };
            let made = self.made(served, role, snapshot, &outputs, started);
            self.metrics
                .forecast(model, origin.as_str(), made.latency.as_secs_f64());
            out.push(Ok(made));
        }
        out
    }

    fn made(
        &self,
        served: &Served,
        role: Role,
        snapshot: &Snapshot,
        outputs: &[f32],
        started: Instant,
    ) -> Made {
        let verified = &served.verified;
        let levels = &verified.levels;
        let last = snapshot.series.last().expect("a forecast has bars");
        let log_returns: Vec<f64> = outputs.iter().map(|v| f64::from(*v)).collect();
        let prices = forecast::prices(levels, &log_returns, last.close);
        Made {
            id: Uuid::now_v7(),
            model: verified.model.clone(),
            role,
            symbol: snapshot.symbol.clone(),
            timeframe: stock::Timeframe::OneDay.into(),
            adjustment: snapshot.adjustment,
            as_of: last.start,
            target_start: forecast::next_session(last.start),
            last_close: last.close,
            levels: levels.levels().into(),
            lower_level: levels.levels()[levels.lower()],
            upper_level: levels.levels()[levels.upper()],
            log_returns,
            prices,
            latency: started.elapsed(),
            created_at: Utc::now(),
        }
    }

    /// The version serving `key` (READY), falling back to the champion when the routed version
    /// is not READY in this replica.
    fn route(&self, key: &str) -> Result<(Arc<Served>, Role)> {
        let traffic = self.traffic.current();
        let routed = traffic.traffic.route(key);
        if let Some(served) = self.models.served(routed) {
            return Ok((served, traffic.traffic.role_of(routed)));
        }
        let champion = traffic.traffic.champion();
        match self.models.served(champion) {
            Some(served) => {
                tracing::warn!(message = "Routed version not ready; serving the champion.", routed = %routed);
                Ok((served, Role::Champion))
            }
            None => Err(Error::Unavailable(format!(
                "no READY version: the champion {champion} is not loaded"
            ))),
        }
    }

    /// Predict: one symbol, routed by the traffic key (the user, or the symbol when anonymous),
    /// or pinned to a READY version. Stored; mirrored to the shadows.
    pub async fn predict(
        self: &Arc<Self>,
        symbol: &Symbol,
        user: Option<Uuid>,
        pinned: Option<ModelRef>,
    ) -> Result<Made> {
        let started = Instant::now();
        let (served, role) = match &pinned {
            Some(model) => {
                let served = self
                    .models
                    .served(model)
                    .ok_or_else(|| crate::error::not_ready(model))?;
                (served, self.traffic.current().traffic.role_of(model))
            }
            None => {
                let key = user.map_or_else(|| symbol.as_str().to_owned(), |u| u.to_string());
                self.route(&key)?
            }
        };
        let snapshot = self.bars.latest(symbol).await.inspect_err(|_| {
            self.metrics.error(served.model(), "request", "bars");
        })?;
        let made = self
            .forecast_many(
                &served,
                role,
                std::slice::from_ref(&snapshot),
                Origin::Request,
                started,
            )
            .await
            .pop()
            .expect("one result per snapshot")?;
        self.log
            .record(vec![Stored {
                made: made.clone(),
                origin: Origin::Request,
                served: true,
                user_id: user,
            }])
            .await;
        if pinned.is_none() {
            self.mirror(vec![snapshot], user);
        }
        Ok(made)
    }

    /// PredictMany: every symbol (deduplicated, in request order), each routed by the traffic
    /// key; windows of one version share inference batches.
    pub async fn predict_many(
        self: &Arc<Self>,
        symbols: Vec<Symbol>,
        user: Option<Uuid>,
    ) -> Vec<(Symbol, Result<Made>)> {
        let started = Instant::now();
        let mut unique = Vec::with_capacity(symbols.len());
        for symbol in symbols {
            if !unique.contains(&symbol) {
                unique.push(symbol);
            }
        }
        // Bounded fan-out to stock-data on cache misses.
        let snapshots: Vec<Result<Snapshot>> = futures::stream::iter(unique.clone())
            .map(|symbol| {
                let bars = self.bars.clone();
                async move { bars.latest(&symbol).await.map_err(Error::from) }
            })
            .buffered(32)
            .collect()
            .await;
        let mut results: Vec<Option<Result<Made>>> = (0..unique.len()).map(|_| None).collect();
        // Group by routed version.
        let mut groups: Vec<(Arc<Served>, Role, Vec<usize>)> = Vec::new();
        for (i, snapshot) in snapshots.iter().enumerate() {
            if let Err(error) = snapshot {
                results[i] = Some(Err(clone_error(error)));
                continue;
            }
            let key = user.map_or_else(|| unique[i].as_str().to_owned(), |u| u.to_string());
            match self.route(&key) {
                Ok((served, role)) => {
                    match groups
                        .iter_mut()
                        .find(|(s, _, _)| s.model() == served.model())
                    {
                        Some((_, _, members)) => members.push(i),
                        None => groups.push((served, role, vec![i])),
                    }
                }
                Err(error) => results[i] = Some(Err(error)),
            }
        }
        let mut stored = Vec::new();
        for (served, role, members) in &groups {
            let group: Vec<Snapshot> = members
                .iter()
                .map(|i| {
                    snapshots[*i]
                        .as_ref()
                        .expect("grouped snapshots are ok")
                        .clone()
                })
                .collect();
            let made = self
                .forecast_many(served, *role, &group, Origin::Request, started)
                .await;
            for (i, result) in members.iter().zip(made) {
                if let Ok(made) = &result {
                    stored.push(Stored {
                        made: made.clone(),
                        origin: Origin::Request,
                        served: true,
                        user_id: user,
                    });
                }
                results[*i] = Some(result);
            }
        }
        self.log.record(stored).await;
        let ok: Vec<Snapshot> = snapshots.into_iter().filter_map(|s| s.ok()).collect();
        if !ok.is_empty() {
            self.mirror(ok, user);
        }
        unique
            .into_iter()
            .zip(results)
            .map(|(symbol, result)| {
                (
                    symbol,
                    result.unwrap_or_else(|| Err(Error::Internal("symbol not forecast".into()))),
                )
            })
            .collect()
    }

    /// Runs the shadow versions on the same inputs in background tasks. The caller's response
    /// never waits for them; a failing, slow or overloaded shadow only shows in its metrics.
    fn mirror(self: &Arc<Self>, snapshots: Vec<Snapshot>, user: Option<Uuid>) {
        let traffic = self.traffic.current();
        for shadow in traffic.traffic.shadows() {
            let Some(served) = self.models.served(shadow) else {
                continue;
            };
            let Ok(permit) = self.shadows.clone().try_acquire_owned() else {
                self.metrics.shadows_dropped.inc();
                continue;
            };
            let (this, snapshots) = (self.clone(), snapshots.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let started = Instant::now();
                let run =
                    this.forecast_many(&served, Role::Shadow, &snapshots, Origin::Shadow, started);
                match tokio::time::timeout(this.shadow_timeout, run).await {
                    Ok(results) => {
                        let stored: Vec<Stored> = results
                            .into_iter()
                            .filter_map(|r| r.ok())
                            .map(|made| Stored {
                                made,
                                origin: Origin::Shadow,
                                served: false,
                                user_id: user,
                            })
                            .collect();
                        this.log.record(stored).await;
                    }
                    Err(_) => {
                        this.metrics.error(served.model(), "shadow", "timeout");
                        tracing::warn!(message = "Shadow run timed out.", model = %served.model());
                    }
                }
            });
        }
    }
}

/// Errors are not `Clone` (they may hold a database error); batch failures only need the code
/// and message.
fn clone_error(error: &Error) -> Error {
    match error {
        Error::InvalidArgument { field, message } => Error::InvalidArgument {
            field: field.clone(),
            message: message.clone(),
        },
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
        Error::Unauthenticated(m) => Error::Unauthenticated(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
        Error::ResourceExhausted(m) => Error::ResourceExhausted(m.clone()),
        Error::PermissionDenied(m) => Error::PermissionDenied(m.clone()),
        Error::Database(e) => Error::Internal(e.to_string()),
        Error::Internal(m) => Error::Internal(m.clone()),
    }
}

/// Read access for the bar loop.
impl Predictor {
    pub fn bar_source(&self) -> &BarSource {
        &self.bars
    }
}
