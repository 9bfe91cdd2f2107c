//! What every handler is given: the upstream services and the gateway's shared stream and
//! cache state.

use std::sync::Arc;

use crate::upstream::Upstreams;

/// Cloned for every request (axum's `State`), so every field is a handle: an `Arc` or a
/// token. (Held by value, the upstreams' client stacks were 10 service clones and drops per
/// request, a third of the gateway's CPU on the quote path.)
#[derive(Clone)]
pub struct AppState {
    pub upstreams: Arc<Upstreams>,
    /// Fires when shutdown begins; live streams end then.
    pub streams_stop: tokio_util::sync::CancellationToken,
    /// The shared upstream quote streams and the limits of client streams.
    pub streams: Arc<crate::routes::market::streams::QuoteHub>,
    /// The gateway's public base URL (discovery metadata).
    pub public_url: Arc<str>,
    /// Recent quotes, served marked with their age while stock-data is unavailable.
    pub quotes: Arc<crate::routes::market::symbols::QuoteCache>,
    /// The gateway's own readiness (`/readyz`): a key set to verify tokens with.
    pub readiness: mirai_platform::admin::Readiness,
}
