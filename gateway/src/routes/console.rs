//! The web console's static files at `/console/` (`MIRAI_CONSOLE_DIR`, the console's
//! `npm run build` output). They are not API operations, so they are not in the OpenAPI
//! document; the console's own calls go to the documented API like any other client's.

use std::path::Path;

use axum::Router;
use axum::response::Redirect;
use tower_http::services::ServeDir;

/// Where the console is served.
pub const PATH: &str = "/console/";

/// `/console/…` from `dir`, and `/console` redirected to `/console/` (the console's assets are
/// relative to the page, so the page needs the slash).
pub fn router(dir: &Path) -> Router {
    Router::new()
        .route(
            "/console",
            axum::routing::get(|| async { Redirect::permanent(PATH) }),
        )
        .nest_service(
            PATH,
            ServeDir::new(dir).append_index_html_on_directories(true),
        )
}
