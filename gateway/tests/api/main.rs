//! Integration tests of the gateway against the real services and PostgreSQL.

mod abuse;
mod account;
mod alerts;
mod analytics;
mod caches;
mod client_ip;
mod edge;
mod helpers;
mod idempotency;
mod local_stack;
mod notifications;
mod predictions;
mod readiness;
mod redis_tls;
mod resilience;
mod rpcs;
mod symbols;
mod traces;
