//! What every response passes through at the edge: the request id, security headers and CORS.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

tokio::task_local! {
    /// The request id of the request being handled (problem bodies carry it).
    static CURRENT_REQUEST_ID: String;
}

/// The id of the request being handled, when called inside [`request_id`].
pub fn current_request_id() -> Option<String> {
    CURRENT_REQUEST_ID.try_with(Clone::clone).ok()
}

/// An incoming id is kept when it is 1–128 visible ASCII characters; otherwise (or when absent)
/// the gateway makes one (UUIDv7).
fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    (1..=128).contains(&bytes.len()) && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// Middleware: `x-request-id` in (or made) and out, and in scope for the handler.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(&REQUEST_ID) {
        Some(value) if acceptable(value) => value.clone(),
        _ => HeaderValue::try_from(uuid::Uuid::now_v7().to_string()).expect("ASCII"),
    };
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let text = id.to_str().unwrap_or_default().to_owned();
    tracing::Span::current().record("request_id", text.as_str());
    let mut response = CURRENT_REQUEST_ID.scope(text, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

/// OWASP's headers for APIs. `Cache-Control: no-store` unless the handler chose a policy
/// (the JWKS and the documentation are cacheable).
pub fn security_headers<S>(router: axum::Router<S>) -> axum::Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let fixed = [
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ];
    let mut router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    for (name, value) in fixed {
        router = router.layer(SetResponseHeaderLayer::overriding(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
}

/// CORS for the configured origins only (no wildcard; no credentials: the API authenticates
/// with bearer tokens, not cookies).
pub fn cors(origins: &[HeaderValue]) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins.iter().cloned()))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
            IDEMPOTENCY_KEY,
            REQUEST_ID,
            HeaderName::from_static("traceparent"),
            HeaderName::from_static("tracestate"),
            // An SSE reconnect from a fetch-based reader resumes where it left off.
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            REQUEST_ID,
            RATE_LIMIT,
            RATE_LIMIT_POLICY,
            header::RETRY_AFTER,
            header::LOCATION,
            HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}
