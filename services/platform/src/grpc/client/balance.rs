//! The innermost layer: client-side load balancing over an upstream's endpoints, each behind
//! its own circuit breaker.
//!
//! Endpoints come from a fixed list (`http://a:50051,http://b:50051`) or from DNS
//! (`dns:///user-headless:50051`), re-resolved every `resolve_interval`, which on Kubernetes
//! means a headless Service's pod addresses. Each endpoint has its own HTTP/2 channel, so calls
//! spread over the replicas instead of riding one long-lived connection to a ClusterIP.
//!
//! A call goes to the less busy of two endpoints picked at random ("power of two choices", by
//! calls in flight) among those whose breaker admits calls: an endpoint whose breaker is open is
//! ejected until its wait is over. When no endpoint admits the call, it is rejected at once with
//! `UNAVAILABLE`, the upstream named and the time left, and never retried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use rand::Rng as _;
use tonic::body::Body;
use tonic::transport::Channel;
use tower::{Service, ServiceExt as _};

use super::breaker::{BreakerConfig, CircuitBreaker, State};
use super::metrics::ClientMetrics;
use super::{REJECTED, Target, is_failure, rejection, upstream_status};

/// One endpoint: its channel, breaker and load.
pub(super) struct Slot {
    pub uri: Arc<str>,
    channel: Channel,
    pub breaker: Arc<CircuitBreaker>,
    in_flight: AtomicUsize,
}

/// What an endpoint looks like from outside (for `/v1/status` and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub circuit: &'static str,
    /// Seconds until an open circuit lets a trial call through.
    pub retry_in_seconds: Option<u64>,
    pub in_flight: usize,
}

/// The endpoints of one upstream. Shared by every clone of its channel.
pub struct Endpoints {
    upstream: &'static str,
    breaker: BreakerConfig,
    /// Breakers never open (resilience switched off): balancing only.
    breakers_on: bool,
    metrics: ClientMetrics,
    slots: RwLock<Arc<Vec<Arc<Slot>>>>,
    /// Tells waiting calls that DNS answered for the first time.
    resolved: tokio::sync::watch::Sender<bool>,
    target: Target,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("upstream", &self.upstream)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    /// The endpoint set for `target`; a DNS target starts its resolver task (which ends when
    /// the last channel using this set is dropped).
    pub(super) fn new(
        upstream: &'static str,
        target: &Target,
        breaker: BreakerConfig,
        breakers_on: bool,
        resolve_interval: Duration,
        metrics: ClientMetrics,
    ) -> Arc<Self> {
        let (resolved, _) = tokio::sync::watch::channel(false);
        let endpoints = Arc::new(Self {
            upstream,
            breaker,
            breakers_on,
            metrics,
            slots: RwLock::default(),
            resolved,
            target: target.clone(),
        });
        match target {
            Target::Static(uris) => {
                endpoints.update(uris.iter().map(String::as_str));
            }
            Target::Dns { host, port } => {
                tokio::spawn(resolve(
                    Arc::downgrade(&endpoints),
                    host.clone(),
                    *port,
                    resolve_interval,
                ));
            }
        }
        endpoints
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Slot>>> {
        Arc::clone(&self.slots.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Each endpoint's circuit state and load.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.snapshot()
            .iter()
            .map(|slot| {
                let state = slot.breaker.state();
                EndpointStatus {
                    endpoint: slot.uri.to_string(),
                    circuit: state.as_str(),
                    retry_in_seconds: slot
                        .breaker
                        .retry_in()
                        .map(|left| left.as_secs_f64().ceil() as u64),
                    in_flight: slot.in_flight.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Replaces the endpoint set, keeping the channels and breakers of endpoints that stay.
    fn update<'a>(&self, uris: impl IntoIterator<Item = &'a str>) {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let mut old: HashMap<Arc<str>, Arc<Slot>> = slots
            .iter()
            .map(|slot| (Arc::clone(&slot.uri), Arc::clone(slot)))
            .collect();
        let mut next = Vec::new();
        for uri in uris {
            if next.iter().any(|s: &Arc<Slot>| &*s.uri == uri) {
                continue;
            }
            match old.remove(uri) {
                Some(slot) => next.push(slot),
                None => match super::connect_lazy(uri) {
                    Ok(channel) => next.push(Arc::new(self.slot(uri, channel))),
                    Err(error) => tracing::warn!(
                        message = "Upstream endpoint ignored.",
                        upstream = self.upstream,
                        endpoint = uri,
                        %error
                    ),
                },
            }
        }
        for gone in old.keys() {
            self.metrics.forget_endpoint(self.upstream, gone);
        }
        if !old.is_empty() || next.len() != slots.len() {
            tracing::info!(
                message = "Upstream endpoints changed.",
                upstream = self.upstream,
                endpoints = ?next.iter().map(|s| s.uri.to_string()).collect::<Vec<_>>()
            );
        }
        *slots = Arc::new(next);
        drop(slots);
        self.resolved.send_replace(true);
    }

    fn slot(&self, uri: &str, channel: Channel) -> Slot {
        let uri: Arc<str> = Arc::from(uri);
        let on_transition = self.metrics.on_transition(self.upstream, Arc::clone(&uri));
        self.metrics
            .set_state(self.upstream, &uri, State::Closed.gauge());
        let breaker = if self.breakers_on {
            self.breaker
        } else {
            BreakerConfig {
                failure_rate: f64::INFINITY,
                slow_call_rate: f64::INFINITY,
                ..self.breaker
            }
        };
        Slot {
            uri,
            channel,
            breaker: Arc::new(CircuitBreaker::new(breaker, on_transition)),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Picks an endpoint and admits the call on its breaker.
    fn pick(
        &self,
        avoid: Option<&str>,
    ) -> Result<(Arc<Slot>, super::breaker::Permit), tonic::Status> {
        let slots = self.snapshot();
        if slots.is_empty() {
            return Err(rejection(
                self.upstream,
                tonic::Status::unavailable(format!(
                    "{}: no endpoint resolved for {}",
                    self.upstream, self.target
                )),
                "no-endpoints",
                Duration::from_secs(1),
            ));
        }
        let mut candidates: Vec<&Arc<Slot>> = slots
            .iter()
            .filter(|slot| slot.breaker.state() != State::Open)
            .collect();
        if candidates.len() > 1
            && let Some(avoid) = avoid
        {
            candidates.retain(|slot| &*slot.uri != avoid);
        }
        // Power of two choices: the less loaded of two random candidates goes first.
        if candidates.len() > 2 {
            let mut rng = rand::rng();
            let a = rng.random_range(0..candidates.len());
            let mut b = rng.random_range(0..candidates.len() - 1);
            if b >= a {
                b += 1;
            }
            candidates.swap(0, a);
            candidates.swap(1, if b == 0 { a } else { b });
        }
        if candidates.len() > 1
            && candidates[1].in_flight.load(Ordering::Relaxed)
                < candidates[0].in_flight.load(Ordering::Relaxed)
        {
            candidates.swap(0, 1);
        }
        let mut retry_in = None::<Duration>;
        for slot in candidates {
            match slot.breaker.try_acquire() {
                Ok(permit) => return Ok((Arc::clone(slot), permit)),
                Err(rejected) => {
                    retry_in =
                        Some(retry_in.map_or(rejected.retry_in, |r| r.min(rejected.retry_in)))
                }
            }
        }
        let retry_in = retry_in
            .or_else(|| slots.iter().filter_map(|s| s.breaker.retry_in()).min())
            .unwrap_or(Duration::from_secs(1));
        self.metrics.rejected(self.upstream, "circuit_open");
        Err(rejection(
            self.upstream,
            tonic::Status::unavailable(format!(
                "{} is unavailable: circuit open on every endpoint, next try in {} s",
                self.upstream,
                retry_in.as_secs_f64().ceil() as u64
            )),
            "circuit-open",
            retry_in,
        ))
    }
}

/// Re-resolves a DNS target until the endpoint set is dropped.
async fn resolve(endpoints: Weak<Endpoints>, host: String, port: u16, every: Duration) {
    let mut failing = false;
    loop {
        let answer = tokio::net::lookup_host((host.as_str(), port)).await;
        let Some(set) = endpoints.upgrade() else {
            return;
        };
        match answer {
            Ok(addresses) => {
                failing = false;
                let mut uris: Vec<String> = addresses
                    .map(|address: SocketAddr| format!("http://{address}"))
                    .collect();
                uris.sort();
                // An empty answer (every pod gone) keeps the last known set: its breakers say
                // whether those addresses still answer.
                if !uris.is_empty() {
                    set.update(uris.iter().map(String::as_str));
                }
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(
                        message = "Upstream DNS resolution failed; keeping the last endpoints.",
                        upstream = set.upstream,
                        host,
                        %error
                    );
                }
                failing = true;
                if set.snapshot().is_empty() {
                    set.resolved.send_replace(true);
                }
            }
        }
        drop(set);
        tokio::time::sleep(every).await;
    }
}

/// Which endpoint served the previous attempt of a call, so a retry goes elsewhere. The retry
/// layer puts one in the request's extensions; the balancer reads and updates it.
#[derive(Clone, Default, Debug)]
pub(super) struct LastEndpoint(pub Arc<Mutex<Option<Arc<str>>>>);

/// The balancing service.
#[derive(Clone, Debug)]
pub(super) struct Balance {
    pub endpoints: Arc<Endpoints>,
}

impl Service<http::Request<Body>> for Balance {
    type Response = http::Response<Body>;
    type Error = tonic::Status;
    type Future = BoxFuture<'static, Result<Self::Response, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let endpoints = Arc::clone(&self.endpoints);
        Box::pin(async move {
            if !*endpoints.resolved.borrow() {
                let mut resolved = endpoints.resolved.subscribe();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), resolved.wait_for(|done| *done))
                        .await;
            }
            let last = request.extensions().get::<LastEndpoint>().cloned();
            let avoid = last
                .as_ref()
                .and_then(|l| l.0.lock().unwrap_or_else(PoisonError::into_inner).clone());
            let (slot, permit) = endpoints.pick(avoid.as_deref())?;
            if let Some(last) = last {
                *last.0.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&slot.uri));
            }
            slot.in_flight.fetch_add(1, Ordering::Relaxed);
            let result = slot.channel.clone().oneshot(request).await;
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(mut response) => {
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .map_or(tonic::Code::Ok, |v| tonic::Code::from_bytes(v.as_bytes()));
                    let shed = response.headers().contains_key(super::OVERLOADED);
                    permit.record(is_failure(code, shed));
                    if code != tonic::Code::Ok {
                        // Trailers-only error: say which upstream answered it.
                        response.headers_mut().insert(
                            super::UPSTREAM,
                            http::HeaderValue::from_static(endpoints.upstream),
                        );
                    }
                    Ok(response)
                }
                Err(error) => {
                    let status = upstream_status(endpoints.upstream, &slot.uri, error.into());
                    permit.record(is_failure(status.code(), false));
                    Err(status)
                }
            }
        })
    }
}

/// True when `status` is a rejection made on this side (breaker, bulkhead): never retried.
pub(super) fn is_rejection(status: &tonic::Status) -> bool {
    status.metadata().contains_key(REJECTED)
}
