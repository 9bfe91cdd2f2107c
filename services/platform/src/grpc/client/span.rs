//! The client span of an outgoing call: `grpc.client` (OpenTelemetry kind client), named
//! `package.Service/Method` like the upstream's server span, which becomes its child — the
//! call's `traceparent` is injected inside this span.
//!
//! One span covers the whole call as the caller sees it, retries and waits for a bulkhead
//! slot included, and ends when the response headers arrive: a unary call's whole life, a
//! stream's opening. `rpc.grpc.status_code` is the code the caller got (an error from this
//! side, a trailers-only answer, or 0); any other code than 0 marks the span as an error.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tracing::Instrument as _;

/// Wraps the channel of one upstream in client spans.
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
    upstream: &'static str,
}

impl<S> Traced<S> {
    pub(super) fn new(inner: S, upstream: &'static str) -> Self {
        Self { inner, upstream }
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Traced<S>
where
    S: tower::Service<
            http::Request<ReqBody>,
            Response = http::Response<ResBody>,
            Error = tonic::Status,
        >,
    S::Future: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = tonic::Status;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = crate::grpc::split_path(request.uri().path());
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            peer.service = self.upstream,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // The context interceptor below runs in `call`: inside the span, so the `traceparent`
        // it injects names this span as the upstream's parent.
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => crate::grpc::answered_code(response),
                    Err(status) => status.code() as i32,
                };
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", code);
                if code != 0 {
                    span.record("otel.status_code", "ERROR");
                }
                result
            }
            .instrument(span),
        )
    }
}
