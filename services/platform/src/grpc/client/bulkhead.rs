//! The bulkhead: a cap on one upstream's calls in flight, so a slow upstream ties up a bounded
//! share of this process (its tasks, sockets and memory) and the calls to other upstreams go on.
//! A call beyond the cap waits up to `max_wait` for a slot (0: it is refused at once) and is
//! then refused with `UNAVAILABLE`, never retried. The slot is held until the response headers
//! arrive, so a long-lived stream does not hold one.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt as _};

use super::metrics::ClientMetrics;
use super::rejection;

#[derive(Clone)]
pub(super) struct BulkheadLayer {
    upstream: &'static str,
    /// None: no limit.
    slots: Option<Arc<Semaphore>>,
    limit: usize,
    max_wait: Duration,
    metrics: ClientMetrics,
}

impl BulkheadLayer {
    /// A bulkhead of `limit` calls (0: no limit).
    pub fn new(
        upstream: &'static str,
        limit: usize,
        max_wait: Duration,
        metrics: ClientMetrics,
    ) -> Self {
        Self {
            upstream,
            slots: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            limit,
            max_wait,
            metrics,
        }
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;
    fn layer(&self, inner: S) -> Bulkhead<S> {
        Bulkhead {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub(super) struct Bulkhead<S> {
    inner: S,
    layer: BulkheadLayer,
}

impl<S> Service<http::Request<Body>> for Bulkhead<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = tonic::Status>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = tonic::Status;
    type Future = BoxFuture<'static, Result<Self::Response, tonic::Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let Some(slots) = self.layer.slots.clone() else {
            return Box::pin(inner.oneshot(request));
        };
        let layer = self.layer.clone();
        let immediate = Arc::clone(&slots).try_acquire_owned().ok();
        Box::pin(async move {
            let slot = match immediate {
                Some(slot) => Some(slot),
                None if layer.max_wait.is_zero() => None,
                None => tokio::time::timeout(layer.max_wait, slots.acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok),
            };
            let Some(_slot) = slot else {
                layer.metrics.rejected(layer.upstream, "bulkhead_full");
                return Err(rejection(
                    layer.upstream,
                    tonic::Status::unavailable(format!(
                        "{} is busy: {} calls already in flight from this process",
                        layer.upstream, layer.limit
                    )),
                    "bulkhead-full",
                    Duration::from_secs(1),
                ));
            };
            inner.oneshot(request).await
        })
    }
}
