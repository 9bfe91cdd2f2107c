//! The public REST API: every route, registered with its OpenAPI description, in one module
//! per upstream service (`user`, `market`, `predictions`, `analytics`, `notifications`).

pub mod analytics;
pub mod console;
pub mod fields;
pub mod market;
pub mod notifications;
pub mod predictions;
pub mod shapes;
pub mod state;
pub mod user;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use crate::problem::Problem;
use state::AppState;

/// Every API route with its documentation. Routes are only ever added here through
/// `routes!`, which registers the handler and its `#[utoipa::path]` together.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(status))
        .merge(user::routes())
        .merge(market::routes())
        .merge(predictions::routes())
        .merge(analytics::routes())
        .merge(notifications::routes())
}

/// Paths served besides the documented API: the document itself and its page.
pub const UNDOCUMENTED: [&str; 2] = ["/openapi.json", "/docs"];

/// The API router plus `/openapi.json`, `/docs` and the problem+json fallback (without the
/// middleware, which `startup` adds).
pub fn router(state: AppState) -> Router {
    let (router, document) = api().split_for_parts();
    let document = crate::openapi::complete(document);
    router
        .merge(SwaggerUi::new(UNDOCUMENTED[1]).url(UNDOCUMENTED[0], document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceStatus {
    pub name: &'static str,
    /// `SERVING`, `NOT_SERVING`, `UNKNOWN`, or `UNREACHABLE` (no answer, or every circuit open).
    pub status: String,
    /// The gateway's circuit to the service: `closed` (calls flow), `open` (calls are refused
    /// at once: the service's routes answer 503 with `Retry-After`), `half_open` (trial calls),
    /// or `partly_open` (some endpoints ejected, the others serve).
    pub circuit: &'static str,
    /// Each endpoint (replica) the gateway balances over.
    pub endpoints: Vec<EndpointStatus>,
}

/// One endpoint of a service, as the gateway's client sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointStatus {
    /// `http://host:port`.
    pub endpoint: String,
    /// `closed`, `half_open` or `open`.
    pub circuit: &'static str,
    /// Seconds until an open circuit lets a trial call through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_seconds: Option<u64>,
    /// Calls from this gateway in flight.
    pub in_flight: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformStatus {
    /// Every service is serving and reachable through at least one endpoint whose circuit is
    /// not open, and the gateway itself is ready (as its `/readyz` says: it holds the user
    /// service's signing keys, so signed-in callers are served): nothing is degraded.
    pub ready: bool,
    pub services: Vec<ServiceStatus>,
}

/// The health of every service behind the gateway and the gateway's circuits to them. Always
/// 200: a service that is down degrades its own routes only (they answer 503), so this is a
/// report, not a probe (`/readyz` on the admin port is the gateway's own readiness).
#[utoipa::path(get, path = "/v1/status", tag = "platform",
    responses(
        (status = 200, description = "Each service's health and circuit", body = PlatformStatus),
    ))]
async fn status(State(state): State<AppState>) -> axum::Json<PlatformStatus> {
    let services = futures::future::join_all(state.upstreams.all().into_iter().map(
        |upstream| async move {
            let status = match upstream.health().await {
                Ok(status) => status.as_str_name().to_owned(),
                Err(_) => "UNREACHABLE".to_owned(),
            };
            let endpoints: Vec<EndpointStatus> = upstream
                .client
                .endpoints()
                .status()
                .into_iter()
                .map(|e| EndpointStatus {
                    endpoint: e.endpoint,
                    circuit: e.circuit,
                    retry_in_seconds: e.retry_in_seconds,
                    in_flight: e.in_flight,
                })
                .collect();
            let circuit = match endpoints.iter().map(|e| e.circuit).collect::<Vec<_>>() {
                states if states.iter().all(|&c| c == "closed") => "closed",
                states if states.iter().all(|&c| c == "open") => "open",
                states if states.iter().all(|&c| c != "closed") => "half_open",
                _ => "partly_open",
            };
            ServiceStatus {
                name: upstream.name,
                status,
                circuit,
                endpoints,
            }
        },
    ))
    .await;
    // A service whose every endpoint is behind an open circuit is refused by this gateway
    // however healthy it reports itself: a stack that just started, whose first calls failed
    // while a service was still coming up, is not ready until its circuit lets calls through.
    // Nor is it ready while the gateway cannot verify tokens (its key set is fetched from user
    // with its own backoff, which may outlast the circuit's).
    let ready = services
        .iter()
        .all(|s| s.status == "SERVING" && s.circuit != "open")
        && state.readiness.report().await.ready;
    axum::Json(PlatformStatus { ready, services })
}

/// The kind of the fallback's 404: no route has this path (a handler's own 404 is `not-found`).
pub const NO_ROUTE: &str = "no-route";

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
    )
    .detail(format!("{method} is not allowed on {}", uri.path()))
    .instance(uri.path().to_owned())
}

async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND, NO_ROUTE, "No such route")
        .detail(format!("no route for {}", uri.path()))
        .instance(uri.path().to_owned())
}
