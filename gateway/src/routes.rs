//! The public REST API.

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::problem::Problem;
use crate::upstream::Upstreams;

#[derive(Clone)]
pub struct AppState {
    pub upstreams: Upstreams,
    /// Fires when shutdown begins; live streams end then.
    pub streams_stop: tokio_util::sync::CancellationToken,
}

/// The API router (without the observability middleware, which `startup` adds).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .merge(crate::symbols::routes())
        .merge(crate::ingest::routes())
        .merge(crate::streams::routes())
        .fallback(not_found)
        .with_state(state)
}

#[derive(Debug, Serialize)]
pub struct ServiceStatus {
    pub name: &'static str,
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN`, or `UNREACHABLE`.
    pub status: String,
}

#[derive(Debug, Serialize)]
pub struct PlatformStatus {
    pub ready: bool,
    pub services: Vec<ServiceStatus>,
}

/// `GET /v1/status`: the health of every service behind the gateway.
async fn status(State(state): State<AppState>) -> (StatusCode, Json<PlatformStatus>) {
    let services = futures::future::join_all(state.upstreams.all().into_iter().map(
        |upstream| async move {
            let status = match upstream.health().await {
                Ok(status) => status.as_str_name().to_owned(),
                Err(_) => "UNREACHABLE".to_owned(),
            };
            ServiceStatus {
                name: upstream.name,
                status,
            }
        },
    ))
    .await;
    let ready = services.iter().all(|s| s.status == "SERVING");
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(PlatformStatus { ready, services }))
}

async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not Found")
        .detail(format!("no route for {}", uri.path()))
        .instance(uri.path().to_owned())
}
