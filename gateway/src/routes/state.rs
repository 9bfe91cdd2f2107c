//! What every handler is given: the upstream services and the gateway's shared stream and
//! cache state.

use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub upstreams: Upstreams,
    /// Fires when shutdown begins; live streams end then.
    pub streams_stop: tokio_util::sync::CancellationToken,
    /// The shared upstream quote streams and the limits of client streams.
    pub streams: std::sync::Arc<crate::routes::market::streams::QuoteHub>,
    /// The gateway's public base URL (discovery metadata).
    pub public_url: String,
    /// Recent quotes, served marked with their age while stock-data is unavailable.
    pub quotes: std::sync::Arc<crate::routes::market::symbols::QuoteCache>,
}
