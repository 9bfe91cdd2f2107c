//! The admin HTTP server every binary runs beside its main listener.
//!
//! - `/healthz`: the process is alive (liveness); never depends on anything external.
//! - `/readyz`: 200 only when every registered [`Readiness`] check passes and shutdown has not
//!   begun; 503 otherwise, with the failing checks in the JSON body.
//! - `/metrics`: the Prometheus/OpenMetrics exposition of the application's [`Metrics`].
//! - `/faults` (only on gRPC servers with fault injection on, see [`crate::grpc::fault`]):
//!   `GET` the current rules, `PUT` new ones (the body is the rule text; 400 with the parse
//!   error when it does not parse), `DELETE` them all. Absent (404) when injection is off.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::grpc::fault::{FaultRules, Faults};
use crate::telemetry::Metrics;

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Readiness state: named dependency checks plus the shutdown flag.
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<ReadinessInner>,
}

#[derive(Default)]
struct ReadinessInner {
    shutting_down: AtomicBool,
    checks: RwLock<Vec<(String, Check)>>,
}

/// One check's outcome in the `/readyz` body.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `/readyz` body.
#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    pub shutting_down: bool,
    pub checks: Vec<CheckReport>,
}

impl Readiness {
    /// Adds a named check, e.g. `database` or an upstream service.
    pub fn add_check<F>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync + 'static,
    {
        self.inner
            .checks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name.into(), Arc::new(check)));
    }

    /// Turns readiness off for good: the first step of a graceful shutdown.
    pub fn set_shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Runs every check concurrently, each bounded by a timeout.
    pub async fn report(&self) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self
            .inner
            .checks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let results =
            futures::future::join_all(checks.into_iter().map(|(name, check)| async move {
                let outcome = match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("timed out after {CHECK_TIMEOUT:?}")),
                };
                CheckReport {
                    name,
                    ok: outcome.is_ok(),
                    error: outcome.err(),
                }
            }))
            .await;
        let shutting_down = self.is_shutting_down();
        ReadinessReport {
            ready: !shutting_down && results.iter().all(|c| c.ok),
            shutting_down,
            checks: results,
        }
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    readiness: Readiness,
}

/// The admin router (exposed for tests that mount it directly).
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { metrics, readiness })
}

/// `GET`/`PUT`/`DELETE /faults` over a live rule set; merge into [`router`] only when fault
/// injection is on, so the paths do not exist otherwise.
pub fn fault_routes(faults: Faults) -> Router {
    Router::new()
        .route(
            "/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .with_state(faults)
}

/// Serves the admin router on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<()> {
    serve_router(listener, router(metrics, readiness), stop).await
}

/// Serves `router` (the admin router, possibly with more routes merged) until `stop` is
/// cancelled.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "alive" }))
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let report = state.readiness.report().await;
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report))
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// The `/faults` body: the rules in the rule syntax, ready to be `PUT` back.
#[derive(Debug, Serialize)]
struct FaultsView {
    rules: String,
}

fn faults_view(rules: &FaultRules) -> Json<FaultsView> {
    Json(FaultsView {
        rules: rules.to_string(),
    })
}

async fn get_faults(State(faults): State<Faults>) -> impl IntoResponse {
    faults_view(&faults.rules())
}

async fn put_faults(State(faults): State<Faults>, body: String) -> Response {
    match FaultRules::parse(&body) {
        Ok(rules) => {
            let view = faults_view(&rules);
            faults.set(rules);
            view.into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn delete_faults(State(faults): State<Faults>) -> StatusCode {
    faults.clear();
    StatusCode::NO_CONTENT
}
