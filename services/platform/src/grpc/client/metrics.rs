//! Metrics of outgoing calls: circuit states and transitions, rejections, retries.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::breaker::{OnTransition, State};
use crate::telemetry::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    upstream: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    upstream: String,
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    upstream: String,
    reason: String,
}

/// The client metric families of one registry (shared by every client of the process).
#[derive(Clone)]
pub struct ClientMetrics {
    state: Family<EndpointLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    rejected: Family<RejectionLabels, Counter>,
    retries: Family<UpstreamLabels, Counter>,
    throttled: Family<UpstreamLabels, Counter>,
}

impl ClientMetrics {
    /// The families of `metrics`, registered on first use.
    pub fn register(metrics: &Metrics) -> Self {
        metrics.shared(|metrics| Self {
            state: metrics.register(
                "circuit_state",
                "Circuit breaker state per upstream endpoint: 0 closed, 1 half-open, 2 open.",
                Family::default(),
            ),
            transitions: metrics.register(
                "circuit_transitions",
                "Circuit breaker transitions, by upstream and states.",
                Family::default(),
            ),
            rejected: metrics.register(
                "client_rejected",
                "Outgoing calls refused on this side, by upstream and reason (circuit_open, bulkhead_full).",
                Family::default(),
            ),
            retries: metrics.register(
                "client_retries",
                "Retries of idempotent outgoing calls, by upstream.",
                Family::default(),
            ),
            throttled: metrics.register(
                "client_retries_throttled",
                "Retries not made because the upstream's retry budget was spent.",
                Family::default(),
            ),
        })
    }

    pub(super) fn set_state(&self, upstream: &str, endpoint: &str, value: i64) {
        self.state
            .get_or_create(&EndpointLabels {
                upstream: upstream.to_owned(),
                endpoint: endpoint.to_owned(),
            })
            .set(value);
    }

    pub(super) fn forget_endpoint(&self, upstream: &str, endpoint: &str) {
        self.state.remove(&EndpointLabels {
            upstream: upstream.to_owned(),
            endpoint: endpoint.to_owned(),
        });
    }

    /// The transition hook of one endpoint's breaker: metrics, and one log line per move.
    pub(super) fn on_transition(&self, upstream: &'static str, endpoint: Arc<str>) -> OnTransition {
        let metrics = self.clone();
        Arc::new(move |from: State, to: State| {
            metrics.set_state(upstream, &endpoint, to.gauge());
            metrics
                .transitions
                .get_or_create(&TransitionLabels {
                    upstream: upstream.to_owned(),
                    from: from.as_str().to_owned(),
                    to: to.as_str().to_owned(),
                })
                .inc();
            if to == State::Open {
                tracing::warn!(
                    message = "Circuit opened.",
                    upstream,
                    endpoint = &*endpoint,
                    from = from.as_str()
                );
            } else {
                tracing::info!(
                    message = "Circuit changed state.",
                    upstream,
                    endpoint = &*endpoint,
                    from = from.as_str(),
                    to = to.as_str()
                );
            }
        })
    }

    pub(super) fn rejected(&self, upstream: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectionLabels {
                upstream: upstream.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(super) fn retried(&self, upstream: &str) {
        self.retries
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    pub(super) fn retry_throttled(&self, upstream: &str) {
        self.throttled
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .inc();
    }
}
