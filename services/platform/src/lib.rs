//! The service runtime every MiraiKakaku binary is built on.
//!
//! # Layout
//! - [`config`]: typed configuration read once from the environment, failing fast with a
//!   message that names the bad variable.
//! - [`telemetry`]: JSON logs carrying trace and span ids, OpenTelemetry traces (OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and the Prometheus [`telemetry::Metrics`] registry.
//! - [`grpc`]: the gRPC server ([`grpc::GrpcServer`]) with health, reflection, RED metrics,
//!   deadlines and trace-context extraction; outgoing channels that propagate trace context and
//!   the remaining deadline.
//! - [`auth`]: the caller (principal) in gRPC metadata and role checks.
//! - [`app`]: [`app::ServiceApp`], the database + listeners skeleton each service builds on.
//! - [`admin`]: the admin HTTP server (`/metrics`, `/healthz`, `/readyz`).
//! - [`db`]: the PostgreSQL pool, migrations (platform + service), unique-violation mapping.
//! - [`events`]: Pub/Sub clients, topology, typed CloudEvents, the outbox relay and consumers.
//! - [`error`]: the one error vocabulary of every service ([`error::ServiceError`]) and its
//!   conversion to `tonic::Status`.
//! - [`wire`]: timestamps and page tokens on the wire.
//! - [`shutdown`]: OS signals to a cancellation token.
//! - [`leader`]: once-per-deployment work, guarded by a Kubernetes Lease or a PostgreSQL lock.
//! - [`bootstrap`]: the `main` of every binary: config → telemetry → app → exit code.
//! - `testing` (feature `testing`): fresh databases and process helpers for integration tests.

pub mod admin;
pub mod app;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod leader;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;

pub use tokio_util::sync::CancellationToken;

impl bootstrap::Settings for config::ServiceConfig {
    fn telemetry(&self) -> &config::TelemetryConfig {
        &self.telemetry
    }
}
