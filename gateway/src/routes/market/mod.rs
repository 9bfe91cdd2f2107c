//! The stock-data service's routes: `symbols` (symbols, bars, quotes), `ingest` (imports and
//! replays) and `streams` (live quotes over SSE and WebSocket).

use utoipa_axum::router::OpenApiRouter;

use crate::routes::state::AppState;

pub mod ingest;
pub mod streams;
pub mod symbols;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(symbols::routes())
        .merge(ingest::routes())
        .merge(streams::routes())
}
