//! `mirai-gateway`: the public REST API in front of the gRPC services.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: `Application::build` binds the public and admin listeners, connects the
//!   upstream channels and assembles the middleware; `run_until_stopped` serves with the
//!   platform's graceful-shutdown sequence.
//! - `upstream`: gRPC channels to the five services (trace context and deadlines propagate)
//!   and their health, which drives `/readyz`.
//! - `routes`: every route of the public API with its OpenAPI description; `openapi` the
//!   document and its page. One module per resource: `account` (sign-up, sessions, the
//!   caller's account and API keys), `admin` (users, roles, audit), `symbols` (symbols, bars,
//!   quotes), `ingest` (imports and replays), `streams` (SSE and WebSocket), `predictions`
//!   (forecasts, models, traffic, scoreboards), `alerts` (price and forecast alerts), `analytics`
//!   (indicators, statistics, trends, reports),
//!   `notifications` (in-app notifications and their stream, webhooks, deliveries, push
//!   devices, preferences).
//! - The middleware, outermost first: `observability` (server span continuing an incoming
//!   `traceparent`, HTTP RED metrics), `edge` (request id, security headers, CORS), `auth`
//!   (JWT against the user service's JWKS, API keys, role extractors), `ratelimit`,
//!   `idempotency`.
//! - `client`: the caller's IP, user agent and request id; `problem`: RFC 9457 bodies;
//!   `fields`: query lists, enum names and timestamps shared by the route modules; `shapes`:
//!   REST types several route groups share (the bar `Timeframe`).

pub mod config;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod startup;
pub mod upstream;
