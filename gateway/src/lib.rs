//! `mirai-gateway`: the public REST API in front of the gRPC services.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: `Application::build` binds the public and admin listeners, connects the
//!   upstream channels and assembles the middleware; `run_until_stopped` serves with the
//!   platform's graceful-shutdown sequence.
//! - `upstream`: gRPC channels to the five services (trace context and deadlines propagate),
//!   their typed clients (`upstreams.user()`, `.stock_data()`, `.prediction()`,
//!   `.analytics()`, `.notification()`) and their health, which drives `/readyz`.
//! - `routes`: every route of the public API with its OpenAPI description (`routes::api`),
//!   grouped by the upstream service that answers it; `openapi` the document and its page.
//!   - `routes::user` (user service): `sessions` (sign-up, sessions, tokens, the public key
//!     set), `account` (the caller's account and API keys), `admin` (users, roles, audit).
//!   - `routes::market` (stock-data service): `symbols` (symbols, bars, quotes), `ingest`
//!     (imports and replays), `streams` (live quotes over SSE and WebSocket).
//!   - `routes::predictions` (prediction service): `forecasts` (forecasts and their history),
//!     `models`, `scoreboards`, `traffic` (admin: traffic, promotion, retirement).
//!   - `routes::analytics` (analytics service): `indicators`, `statistics`, `trends`,
//!     `reports`.
//!   - `routes::notifications` (notification service): `alerts` (with their `conditions`),
//!     `inbox` (in-app notifications and their stream), `webhooks`, `deliveries`, `devices`
//!     (push devices), `preferences` (and the notification email address).
//!   - `routes::state`: the `AppState` every handler is given; `routes::shapes`: REST types
//!     several route groups share (the bar `Timeframe`, `ModelRef`, `Maturity`);
//!     `routes::fields`: query lists, enum names and timestamps the route modules share.
//! - `middleware`, outermost first: `observability` (server span continuing an incoming
//!   `traceparent`, HTTP RED metrics), `edge` (request id, security headers, CORS), `auth`
//!   (JWT against the user service's JWKS, API keys, role extractors), `ratelimit`,
//!   `idempotency`; and `client`, the caller's IP, user agent and request id.
//! - `problem`: RFC 9457 bodies.

pub mod config;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod upstream;
