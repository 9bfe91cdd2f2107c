//! The versions this replica knows, their serving state, and the loaded engines.
//!
//! [`ModelSet::refresh`] reads `registry.json` and (re)loads every version whose files changed
//! since the last attempt, on a blocking thread. A version is swapped in only after it passed
//! every check and warmed up ([`crate::artifact::load`]); a refused artifact never replaces a
//! serving one: the previous engine keeps serving and the refusal is stated in the version's
//! `status_reason`. Failed bytes are not retried until they change again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};

use crate::artifact::{self, RegistryFile, Verified};
use crate::domain::model_ref::ModelRef;
use crate::inference::engine::{BatchSettings, Engine, EngineMetrics};
use crate::metrics::{Metrics, VersionLabels};

/// Serving state of a version in this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Loading,
    Ready,
    Failed,
    Retired,
}

/// A version's outputs per symbol, with the origin bar they belong to.
type ForecastCache = Mutex<HashMap<String, (DateTime<Utc>, Arc<[f32]>)>>;

/// A loaded, verified and warmed-up version.
pub struct Served {
    pub verified: Verified,
    pub engine: Engine,
    pub loaded_at: DateTime<Utc>,
    /// Outputs per symbol at the origin bar they were computed for (see `MIRAI_FORECAST_CACHE`).
    forecasts: ForecastCache,
}

impl Served {
    pub fn model(&self) -> &ModelRef {
        &self.verified.model
    }

    pub fn window(&self) -> usize {
        self.verified.card.window
    }

    /// The cached outputs for `symbol` if they were computed at `as_of`.
    pub fn cached(&self, symbol: &str, as_of: DateTime<Utc>) -> Option<Arc<[f32]>> {
        let cache = self
            .forecasts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache
            .get(symbol)
            .filter(|(at, _)| *at == as_of)
            .map(|(_, outputs)| outputs.clone())
    }

    /// Remembers outputs for `symbol` at `as_of`, unless newer ones are cached.
    pub fn remember(&self, symbol: &str, as_of: DateTime<Utc>, outputs: Arc<[f32]>) {
        let mut cache = self
            .forecasts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match cache.get(symbol) {
            Some((at, _)) if *at > as_of => {}
            _ => {
                cache.insert(symbol.to_owned(), (as_of, outputs));
            }
        }
    }

    pub fn forget(&self, symbol: &str) {
        self.forecasts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(symbol);
    }
}

/// What the API shows about one version.
#[derive(Clone)]
pub struct VersionInfo {
    pub model: ModelRef,
    pub status: Status,
    pub reason: String,
    /// sha256 in registry.json.
    pub registered_sha256: String,
    pub served: Option<Arc<Served>>,
}

struct Entry {
    status: Status,
    reason: String,
    registered_sha256: String,
    served: Option<Arc<Served>>,
    /// Fingerprint of the files last attempted (loaded or refused).
    tried: Option<String>,
}

/// A change [`ModelSet::refresh`] made, for the caller to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// First seen in registry.json.
    Registered { model: ModelRef, sha256: String },
    /// Now serving these verified bytes.
    Ready { model: ModelRef, sha256: String },
    /// Refused; `kept_serving` when an earlier artifact keeps serving.
    Refused {
        model: ModelRef,
        reason: String,
        kept_serving: bool,
    },
}

/// Every version of this replica.
pub struct ModelSet {
    dir: PathBuf,
    batch_sizes: Vec<usize>,
    batching: BatchSettings,
    metrics: Metrics,
    entries: RwLock<BTreeMap<ModelRef, Entry>>,
    registry: RwLock<Option<RegistryFile>>,
    /// One refresh at a time (the poller and a test may both ask).
    refreshing: tokio::sync::Mutex<()>,
}

impl ModelSet {
    pub fn new(
        dir: PathBuf,
        batch_sizes: Vec<usize>,
        batching: BatchSettings,
        metrics: Metrics,
    ) -> Self {
        Self {
            dir,
            batch_sizes,
            batching,
            metrics,
            entries: RwLock::default(),
            registry: RwLock::default(),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ModelRef, Entry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ModelRef, Entry>> {
        self.entries.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The engine of a READY version.
    pub fn served(&self, model: &ModelRef) -> Option<Arc<Served>> {
        self.read().get(model).and_then(|e| match e.status {
            Status::Ready => e.served.clone(),
            _ => None,
        })
    }

    pub fn info(&self, model: &ModelRef) -> Option<VersionInfo> {
        self.read().get(model).map(|e| info(model, e))
    }

    pub fn list(&self) -> Vec<VersionInfo> {
        self.read().iter().map(|(m, e)| info(m, e)).collect()
    }

    /// The roles registry.json proposes (seed of the first traffic configuration).
    pub fn initial_roles(&self) -> Option<(ModelRef, Vec<ModelRef>)> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        let registry = registry.as_ref()?;
        let champion = ModelRef::parse(&registry.champion.name, &registry.champion.version).ok()?;
        let challengers = registry
            .challengers
            .iter()
            .filter_map(|c| ModelRef::parse(&c.name, &c.version).ok())
            .collect();
        Some((champion, challengers))
    }

    /// Marks a version retired: it is unloaded and never loaded again by this replica.
    pub fn retire(&self, model: &ModelRef, reason: &str) {
        let mut entries = self.write();
        let entry = entries.entry(model.clone()).or_insert_with(|| Entry {
            status: Status::Retired,
            reason: String::new(),
            registered_sha256: String::new(),
            served: None,
            tried: None,
        });
        entry.status = Status::Retired;
        entry.reason = reason.to_owned();
        entry.served = None;
        self.metrics
            .ready
            .get_or_create(&VersionLabels::of(model))
            .set(0);
    }

    /// Reads registry.json and loads what changed. Returns what happened.
    pub async fn refresh(&self) -> Vec<Change> {
        let _one_at_a_time = self.refreshing.lock().await;
        let dir = self.dir.clone();
        let registry = match tokio::task::spawn_blocking(move || RegistryFile::read(&dir)).await {
            Ok(Ok(registry)) => registry,
            Ok(Err(error)) => {
                tracing::warn!(message = "Model registry unreadable; keeping the loaded versions.", %error);
                return Vec::new();
            }
            Err(error) => {
                tracing::error!(message = "Model registry read panicked.", %error);
                return Vec::new();
            }
        };
        *self
            .registry
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(registry.clone());
        let mut changes = Vec::new();
        for entry in &registry.models {
            let model = match entry.model() {
                Ok(model) => model,
                Err(error) => {
                    tracing::warn!(message = "Registry entry skipped.", %error);
                    continue;
                }
            };
            let known = {
                let mut entries = self.write();
                let known = entries.contains_key(&model);
                let e = entries.entry(model.clone()).or_insert_with(|| Entry {
                    status: Status::Loading,
                    reason: String::new(),
                    registered_sha256: entry.sha256.clone(),
                    served: None,
                    tried: None,
                });
                if e.status == Status::Retired {
                    continue;
                }
                e.registered_sha256 = entry.sha256.clone();
                known
            };
            if !known {
                changes.push(Change::Registered {
                    model: model.clone(),
                    sha256: entry.sha256.clone(),
                });
            }
            let (dir, e) = (self.dir.clone(), entry.clone());
            let fingerprint = tokio::task::spawn_blocking(move || e.fingerprint(&dir)).await;
            let fingerprint = match fingerprint {
                Ok(Ok(fingerprint)) => Some(fingerprint),
                Ok(Err(error)) => {
                    // A missing or unreadable file: refuse with the reason (once per reason).
                    let reason = error.to_string();
                    if let Some(change) = self.refuse(&model, reason, None) {
                        changes.push(change);
                    }
                    None
                }
                Err(_) => None,
            };
            let Some(fingerprint) = fingerprint else {
                continue;
            };
            let unchanged = {
                let entries = self.read();
                let e = &entries[&model];
                e.tried.as_deref() == Some(fingerprint.as_str())
            };
            if unchanged {
                continue;
            }
            let (dir, e, sizes) = (self.dir.clone(), entry.clone(), self.batch_sizes.clone());
            let loaded =
                tokio::task::spawn_blocking(move || artifact::load(&dir, &e, &sizes)).await;
            match loaded {
                Ok(Ok(verified)) => match self.swap_in(verified) {
                    Ok(change) => changes.push(change),
                    Err(reason) => {
                        if let Some(change) = self.refuse(&model, reason, Some(fingerprint)) {
                            changes.push(change);
                        }
                    }
                },
                Ok(Err(error)) => {
                    if let Some(change) = self.refuse(&model, error.to_string(), Some(fingerprint))
                    {
                        changes.push(change);
                    }
                }
                Err(error) => {
                    let reason = format!("loading panicked: {error}");
                    if let Some(change) = self.refuse(&model, reason, Some(fingerprint)) {
                        changes.push(change);
                    }
                }
            }
        }
        changes
    }

    fn swap_in(&self, verified: Verified) -> Result<Change, String> {
        let model = verified.model.clone();
        let engine = Engine::start(
            model.clone(),
            verified.plans.clone(),
            self.batching,
            EngineMetrics::of(&self.metrics, &model),
        )
        .map_err(|e| format!("cannot start inference workers: {e}"))?;
        let sha256 = verified.sha256.clone();
        let fingerprint = verified.fingerprint.clone();
        tracing::info!(
            message = "Model version ready.",
            model = %model,
            sha256 = %sha256,
            plans = ?verified.plans.sizes(),
            costs_us = ?verified.plans.costs().iter().map(|c| (c * 1e6).round()).collect::<Vec<_>>(),
        );
        let served = Arc::new(Served {
            verified,
            engine,
            loaded_at: Utc::now(),
            forecasts: Mutex::default(),
        });
        let mut entries = self.write();
        let e = entries.get_mut(&model).expect("entry created by refresh");
        e.status = Status::Ready;
        e.reason = String::new();
        e.served = Some(served);
        e.tried = Some(fingerprint);
        self.metrics
            .ready
            .get_or_create(&VersionLabels::of(&model))
            .set(1);
        Ok(Change::Ready { model, sha256 })
    }

    /// Records a refusal; `None` when the same reason was already recorded.
    fn refuse(&self, model: &ModelRef, reason: String, tried: Option<String>) -> Option<Change> {
        let mut entries = self.write();
        let e = entries.get_mut(model)?;
        let kept_serving = e.served.is_some() && e.status == Status::Ready;
        let stated = if kept_serving {
            let since = e
                .served
                .as_ref()
                .map(|s| s.loaded_at.to_rfc3339())
                .unwrap_or_default();
            format!(
                "a changed artifact was refused ({reason}); still serving the artifact verified at {since}"
            )
        } else {
            reason.clone()
        };
        if let Some(tried) = tried {
            e.tried = Some(tried);
        } else if e.reason == stated {
            return None;
        }
        if !kept_serving {
            e.status = Status::Failed;
        }
        e.reason = stated;
        self.metrics
            .artifact_refusals
            .get_or_create(&VersionLabels::of(model))
            .inc();
        tracing::error!(message = "Model artifact refused.", model = %model, %reason, kept_serving);
        Some(Change::Refused {
            model: model.clone(),
            reason,
            kept_serving,
        })
    }
}

fn info(model: &ModelRef, e: &Entry) -> VersionInfo {
    VersionInfo {
        model: model.clone(),
        status: e.status,
        reason: e.reason.clone(),
        registered_sha256: e.registered_sha256.clone(),
        served: e.served.clone(),
    }
}
