//! `mirai-gateway`: the one REST door of the platform.
//!
//! # Layout
//! - `auth`: access-token verification (JWKS), the principal, role requirements.
//! - `config`: listeners, upstream URLs and timeouts from the environment.
//! - `startup`: [`startup::Application`] binds the API and admin listeners and runs them with the
//!   platform's graceful-shutdown sequence.
//! - `upstream`: gRPC channels to the five services (trace context and deadlines propagate)
//!   and their health, which drives `/readyz`.
//! - `routes`: the axum router of the public API; one module per resource (`symbols`,
//!   `ingest` for imports and replays, `streams` for SSE).
//! - `observability`: per-request server span (continuing an incoming `traceparent`) and HTTP
//!   RED metrics.
//! - `problem`: RFC 9457 problem+json error bodies.

pub mod auth;
pub mod config;
pub mod ingest;
pub mod observability;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod streams;
pub mod symbols;
pub mod upstream;
