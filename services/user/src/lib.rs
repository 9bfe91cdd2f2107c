//! `mirai-user`: Accounts, Argon2id credentials, JWT access tokens and JWKS, rotating refresh-token families, roles (RBAC), API keys and the security audit log.
//!
//! # Layout
//! - `config`: configuration from the environment (see the README's table).
//! - `startup`: assembles the service on [`mirai_platform::app::ServiceApp`].
//! - `api`: the gRPC API (translation, the flows of login, refresh and friends);
//!   `principal`: who is calling and the role checks made with it; `error`: the platform's
//!   error vocabulary as this service uses it.
//! - `domain/`: email, password policy, profile and role values (no I/O); `password`: Argon2id on
//!   blocking threads; `keys`: the Ed25519 key ring, JWKS and rotation; `tokens`: access
//!   tokens and opaque secrets.
//! - `store/`: every SQL statement — accounts (`users`), refresh-token families (`sessions`),
//!   brute-force counters and unlock links (`throttle`), API keys (`api_keys`), the security
//!   audit log (`audit`), the deletion saga's rows and the erasure (`deletion`).
//! - `deletion`: the user side of the account-deletion saga.
//! - `migrations/`: its schema, versions from 1000 up. `data/`: the common-password list.

pub mod api;
pub mod config;
pub mod deletion;
pub mod domain;
pub mod error;
pub mod keys;
pub mod password;
pub mod principal;
pub mod startup;
pub mod store;
pub mod tokens;

/// `ce-source` of the events this service publishes.
pub const SERVICE: &str = "user";
