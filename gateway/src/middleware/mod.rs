//! The middleware, outermost first: `observability` (server span continuing an incoming
//! `traceparent`, HTTP RED metrics), `edge` (request id, security headers, CORS), `auth` (JWT
//! against the user service's JWKS, API keys, role extractors), `ratelimit`, `idempotency`;
//! and `client`, the caller's IP, user agent and request id they and the routes read.

pub mod auth;
pub mod client;
pub mod edge;
pub mod idempotency;
pub mod observability;
pub mod ratelimit;
