//! The Prometheus registry of one application.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::registry::{Metric, Registry};

/// A shareable Prometheus registry. Metric names are prefixed with `mirai_`.
///
/// Register families at startup; the families themselves are cheap clones that the code
/// updates without touching the registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    /// Metric groups registered once per registry and shared by their users (see [`Metrics::shared`]).
    shared: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send>>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix("mirai"))),
            shared: Arc::default(),
        }
    }

    /// Registers `metric` as `mirai_<name>`; returns it for convenience.
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(name, help, metric.clone());
        metric
    }

    /// The group of metrics of type `T`, registered by `register` the first time it is asked
    /// for and shared afterwards: several users of one kind of metric (e.g. every outgoing
    /// client of a process) report into the same families instead of registering twice.
    pub fn shared<T: Clone + Send + 'static>(&self, register: impl FnOnce(&Metrics) -> T) -> T {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = shared.get(&TypeId::of::<T>()) {
            return existing
                .downcast_ref::<T>()
                .expect("stored under its own type id")
                .clone();
        }
        let group = register(self);
        shared.insert(TypeId::of::<T>(), Box::new(group.clone()));
        group
    }

    /// The OpenMetrics text exposition of every registered metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}
